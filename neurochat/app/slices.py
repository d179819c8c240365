"""The geometry and the numbers behind the slice viewer (`viewer.py` draws): native voxels ↔ the
picture's pixels ↔ millimetres, the readout at a voxel, and the table of peaks. No plotting here.

Every volume is an (X, Y, Z) array in one native grid with its voxel → mm affine (MNI152 mm when the
subject's transform is known, else scanner mm). The slices are drawn in that voxel grid turned to the
closest RAS+ axes (nibabel's `io_orientation`), so the picture's left and right follow the affine,
whatever order the file stores its axes in; a residual rotation of a few degrees is not resampled away,
while every coordinate shown goes through the full affine. The layout is computed before drawing, not
measured after, so a pixel maps back to a voxel exactly (`pixel_to_voxel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from neurochat.errors import DataError

CONVENTIONS = ("neurological", "radiological")
PANELS = ("sagittal", "coronal", "axial")
PEAK_HEADERS = ["#", "x (mm)", "y (mm)", "z (mm)", "value", "region"]
DEFAULT_MIN_DISTANCE_MM = 8.0  # peaks closer than this are one blob (about two demo voxels of smoothing)
DEFAULT_WIDTH_PX = 900  # the picture's width: readable on a 1280×720 projector beside the 3D view

_GAP_PX = 14  # between panels
TITLE_PX = 26  # band above a row of panels (the row's title)
LABEL_PX = 18  # band above each panel (its name and cut) and below it (the edge letters)
FOOTER_PX = 36  # two lines under the panels: the convention and space, and the overlays' legend
COLORBAR_PX = 76  # colorbar strip and its tick labels on the right


# -- geometry: native voxels ↔ display ↔ millimetres ---------------------------------------------


@dataclass(frozen=True)
class PanelBox:
    """Where one slice was drawn: its pixel box in the picture and the display grid it shows."""

    name: str  # "sagittal", "coronal" or "axial"
    row: int  # which row of the figure (0 unless several maps are drawn)
    left: int  # px from the picture's left edge
    top: int  # px from the picture's top edge
    width: int
    height: int
    n_cols: int  # display columns (voxels across)
    n_rows: int  # display rows (voxels down)


@dataclass(frozen=True)
class SliceLayout:
    """Everything needed to map a pixel of a drawn figure back to a native voxel (small; keep it in a gr.State)."""

    shape: tuple[int, int, int]  # the native grid (X, Y, Z)
    orientation: tuple[tuple[int, int], ...]  # per native axis: (RAS axis it runs along, +1 or -1)
    convention: str
    cut: tuple[int, int, int]  # the crosshair, in native voxels
    panels: tuple[PanelBox, ...]
    size: tuple[int, int]  # the picture's (width, height) in px
    row_tops: tuple[int, ...] = (0,)  # px: where each row's title band begins


@dataclass
class Rendered:
    """A drawn figure and its layout."""

    image: np.ndarray  # uint8 (H, W, 3)
    layout: SliceLayout
    note: str = ""  # a sentence for the page when the map shows nothing ("" when all is well)


def _orientation(affine: np.ndarray) -> tuple[tuple[int, int], ...]:
    """Per native axis, the closest RAS+ axis (0 = x/R, 1 = y/A, 2 = z/S) and whether the index runs along it."""
    ornt = nib.orientations.io_orientation(np.asarray(affine, np.float64))
    if np.isnan(ornt).any():
        raise DataError(f"the affine {np.round(affine, 3).tolist()} has no orientation (a zero or repeated axis): "
                        "check the NIfTI header's sform/qform")  # fmt: skip
    return tuple((int(axis), int(flip)) for axis, flip in ornt)


def to_ras(volume: np.ndarray, orientation) -> np.ndarray:
    """The volume with its axes reordered and flipped so index i, j, k grow towards R, A, S."""
    return nib.orientations.apply_orientation(volume, np.array(orientation))


def native_to_ras(voxel, shape, orientation) -> tuple[int, int, int]:
    ras = [0, 0, 0]
    for native_axis, (ras_axis, flip) in enumerate(orientation):
        index = int(voxel[native_axis])
        ras[ras_axis] = index if flip == 1 else shape[native_axis] - 1 - index
    return tuple(ras)


def _ras_to_native(ras, shape, orientation) -> tuple[int, int, int]:
    native = [0, 0, 0]
    for native_axis, (ras_axis, flip) in enumerate(orientation):
        index = int(ras[ras_axis])
        native[native_axis] = index if flip == 1 else shape[native_axis] - 1 - index
    return tuple(native)


def _ras_shape(shape, orientation) -> tuple[int, int, int]:
    ras = [0, 0, 0]
    for native_axis, (ras_axis, _) in enumerate(orientation):
        ras[ras_axis] = shape[native_axis]
    return tuple(ras)


def _ras_zooms(affine, orientation) -> tuple[float, float, float]:
    """Voxel size in mm along R, A, S."""
    native_zooms = np.sqrt((np.asarray(affine, np.float64)[:3, :3] ** 2).sum(axis=0))
    ras = [1.0, 1.0, 1.0]
    for native_axis, (ras_axis, _) in enumerate(orientation):
        ras[ras_axis] = float(native_zooms[native_axis])
    return tuple(ras)


# Which RAS axes a panel shows across and down, and which one it cuts through.
_PANEL_AXES = {"sagittal": (1, 2, 0), "coronal": (0, 2, 1), "axial": (0, 1, 2)}  # (across, down, cut)


def _flips_across(name: str, convention: str) -> bool:
    """True when the panel's columns run against its RAS axis: x grows to the left in radiological views."""
    return _PANEL_AXES[name][0] == 0 and convention == "radiological"


def panel_slice(ras_volume: np.ndarray, name: str, ras_cut, convention: str) -> np.ndarray:
    """(n_rows, n_cols) of one panel as shown: row 0 at the top (superior, or anterior on the axial panel)."""
    across, down, cut = _PANEL_AXES[name]
    plane = np.take(ras_volume, ras_cut[cut], axis=cut)  # (across, down): the two remaining RAS axes, in order
    plane = plane.T[::-1]  # (across, down) -> (down, across), top row = highest S (or A)
    return plane[:, ::-1] if _flips_across(name, convention) else plane


def _display_to_ras(name: str, row: int, col: int, layout: SliceLayout) -> tuple[int, int, int]:
    across, down, cut = _PANEL_AXES[name]
    shape = _ras_shape(layout.shape, layout.orientation)
    ras = list(native_to_ras(layout.cut, layout.shape, layout.orientation))
    ras[down] = shape[down] - 1 - row
    ras[across] = shape[across] - 1 - col if _flips_across(name, layout.convention) else col
    return tuple(ras)


def edge_letters(name: str, convention: str) -> tuple[str, str]:
    """The anatomical directions at the panel's left and right edges."""
    if name == "sagittal":
        return "P", "A"
    return ("R", "L") if convention == "radiological" else ("L", "R")


def voxel_to_mm(affine: np.ndarray, voxel) -> np.ndarray:
    """(3,) mm of a voxel index (its centre) through the affine."""
    affine = np.asarray(affine, np.float64)
    return affine[:3, :3] @ np.asarray(voxel, np.float64) + affine[:3, 3]


def mm_to_voxel(affine: np.ndarray, xyz, shape) -> tuple[int, int, int]:
    """The nearest voxel to a point in mm; a point outside the grid is refused with the grid's extent."""
    inverse = np.linalg.inv(np.asarray(affine, np.float64))
    ijk = np.rint(inverse[:3, :3] @ np.asarray(xyz, np.float64) + inverse[:3, 3]).astype(int)
    if np.any(ijk < 0) or np.any(ijk >= np.asarray(shape)):
        corners = np.array([voxel_to_mm(affine, np.array(c) * (np.asarray(shape) - 1)) for c in np.ndindex(2, 2, 2)])
        low, high = corners.min(axis=0).round(), corners.max(axis=0).round()
        raise DataError(f"({', '.join(f'{v:g}' for v in np.round(xyz, 1))}) mm lies outside this volume, which spans "
                        f"x {low[0]:g}…{high[0]:g}, y {low[1]:g}…{high[1]:g}, z {low[2]:g}…{high[2]:g} mm")  # fmt: skip
    return tuple(int(v) for v in ijk)


def pixel_to_voxel(layout: SliceLayout, x: float, y: float) -> tuple[int, int, int] | None:
    """The native voxel under pixel (x, y) of a drawn figure (x right, y down, as `gr.SelectData.index`
    gives them); None when the pixel is on no panel (a margin, a label, the colorbar)."""
    for box in layout.panels:
        if box.left <= x < box.left + box.width and box.top <= y < box.top + box.height:
            col = min(int((x - box.left) / box.width * box.n_cols), box.n_cols - 1)
            row = min(int((y - box.top) / box.height * box.n_rows), box.n_rows - 1)
            ras = _display_to_ras(box.name, row, col, layout)
            return _ras_to_native(ras, layout.shape, layout.orientation)
    return None


def voxel_to_pixel(layout: SliceLayout, voxel, panel: str, row: int = 0) -> tuple[float, float]:
    """The centre pixel of a voxel on one panel (the inverse of `pixel_to_voxel` for a voxel in that slice)."""
    box = next(b for b in layout.panels if b.name == panel and b.row == row)
    across, down, _ = _PANEL_AXES[panel]
    shape = _ras_shape(layout.shape, layout.orientation)
    ras = native_to_ras(voxel, layout.shape, layout.orientation)
    col = shape[across] - 1 - ras[across] if _flips_across(panel, layout.convention) else ras[across]
    display_row = shape[down] - 1 - ras[down]
    return box.left + (col + 0.5) * box.width / box.n_cols, box.top + (display_row + 0.5) * box.height / box.n_rows


def plan(shape, affine, convention: str, cut, n_rows: int = 1, width_px: int = DEFAULT_WIDTH_PX,
         titled: bool = True) -> SliceLayout:  # fmt: skip
    """Pixel boxes for `n_rows` rows of sagittal | coronal | axial, each panel as many mm wide as it shows
    (one scale for all, so a millimetre is as long on every panel)."""
    orientation = _orientation(check_affine(affine))
    ras_shape, zooms = _ras_shape(shape, orientation), _ras_zooms(affine, orientation)
    extent_mm = {name: (ras_shape[across] * zooms[across], ras_shape[down] * zooms[down])
                 for name, (across, down, _) in _PANEL_AXES.items()}  # fmt: skip
    px_per_mm = (width_px - 4 * _GAP_PX - COLORBAR_PX) / sum(across for across, _ in extent_mm.values())
    if px_per_mm <= 0:
        raise DataError(f"width_px={width_px} leaves no room for the panels: ask for at least 300 px")
    sizes = {name: (max(1, round(across * px_per_mm)), max(1, round(down * px_per_mm)))
             for name, (across, down) in extent_mm.items()}  # fmt: skip
    row_height = max(height for _, height in sizes.values())
    panels, row_tops, top = [], [], 0
    for row in range(n_rows):
        row_tops.append(top)
        top += (TITLE_PX if titled else 0) + LABEL_PX
        left = _GAP_PX
        for name in PANELS:
            width, height = sizes[name]
            down_shift = (row_height - height) // 2  # panels of one row share a centre line
            across, down, _ = _PANEL_AXES[name]
            panels.append(PanelBox(name, row, left, top + down_shift, width, height, ras_shape[across], ras_shape[down]))
            left += width + _GAP_PX
        top += row_height + LABEL_PX
    return SliceLayout(tuple(int(n) for n in shape), orientation, _check_convention(convention),
                       _check_cut(cut, shape), tuple(panels), (left + COLORBAR_PX, top + FOOTER_PX),
                       tuple(row_tops))  # fmt: skip


# -- checks at the boundary -------------------------------------------------------------------------


def check_volume(volume, what: str) -> np.ndarray:
    array = np.asarray(volume)
    if array.ndim == 4 and array.shape[3] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"the {what} has shape {array.shape}; the viewer draws one 3-D (X, Y, Z) volume — "
                        "pick one volume of a 4-D file first")  # fmt: skip
    return array.astype(np.float32)


def check_same_grid(array, what: str, shape) -> np.ndarray:
    checked = check_volume(array, what)
    if checked.shape != tuple(shape):
        raise DataError(f"the {what} has shape {checked.shape} but the map has shape {tuple(shape)}: both must be "
                        "in the same native grid (resample the overlay onto the map's grid first)")  # fmt: skip
    return checked


def check_affine(affine) -> np.ndarray:
    array = np.asarray(affine, np.float64)
    if array.shape != (4, 4) or not np.isfinite(array).all():
        raise DataError(f"the affine has shape {array.shape}; expected the NIfTI header's finite 4×4 voxel → mm matrix")
    return array


def _check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise DataError(f"convention {convention!r}: choose 'neurological' (left is left) or 'radiological' "
                        "(left is right, as if facing the patient)")  # fmt: skip
    return convention


def _check_cut(voxel, shape) -> tuple[int, int, int]:
    cut = tuple(int(v) for v in np.asarray(voxel).ravel())
    if len(cut) != 3 or any(not 0 <= v < n for v, n in zip(cut, shape, strict=True)):
        raise DataError(f"voxel {tuple(voxel)} is outside the grid {tuple(shape)}: each index must be 0 … size − 1")
    return cut


def map_note(values: np.ndarray, threshold: float) -> str:
    """A sentence when the map has nothing to show at this threshold; "" when it has."""
    finite = np.isfinite(values)
    if not finite.any():
        return "The map has no finite values (all NaN or infinite): there is nothing to show or rank."
    strongest = float(np.abs(values[finite]).max())
    if strongest == 0.0:
        return "The map is zero everywhere: there is nothing to show or rank."
    if strongest < threshold:
        return (f"No voxel reaches the threshold {threshold:g} (the strongest is {strongest:.3g}): "
                "lower the threshold to see the map.")  # fmt: skip
    return ""


def default_cut(values: np.ndarray) -> tuple[int, int, int]:
    """Where to put the crosshair first: the map's strongest voxel, else the grid's centre."""
    finite = np.where(np.isfinite(values), np.abs(values), 0.0)
    if finite.max() > 0:
        return tuple(int(v) for v in np.unravel_index(int(np.argmax(finite)), values.shape))
    return tuple(n // 2 for n in values.shape)


# -- peaks and readout -------------------------------------------------------------------------------


@dataclass
class Readout:
    """What the crosshair points at."""

    voxel: tuple[int, int, int]
    xyz: tuple[float, float, float]  # mm, in `space`
    space: str  # "MNI" or "scanner"
    value: float
    region: str = ""

    def text(self, label: str = "value") -> str:
        x, y, z = (f"{v:.0f}" for v in self.xyz)
        value = "NaN" if not np.isfinite(self.value) else f"{self.value:.3g}"
        where = f" · {self.region}" if self.region else ""
        return f"{self.space} ({x}, {y}, {z}) mm · voxel {self.voxel} · {label} {value}{where}"


def readout(volume, affine, voxel, *, space: str = "MNI", regions=None) -> Readout:
    """The coordinate (through the affine), the value and the region (when `regions` knows it) at a voxel."""
    values = check_volume(volume, "map")
    cut = _check_cut(voxel, values.shape)
    xyz = voxel_to_mm(check_affine(affine), cut)
    region = regions.name_at(cut) if regions is not None else ""
    return Readout(cut, tuple(float(v) for v in xyz), space, float(values[cut]), region)


@dataclass
class PeakTable:
    """Local maxima as rows for a gr.Dataframe (headers `PEAK_HEADERS`), and a sentence when there are none."""

    headers: list[str]
    rows: list[list]
    voxels: list[tuple[int, int, int]]  # the native voxel of each row (to move the crosshair to a peak)
    note: str = ""

    def as_gradio(self) -> dict:
        """The value a gr.Dataframe takes."""
        return {"headers": self.headers, "data": self.rows}


def peak_table(values, affine, regions=None, n: int = 10, min_distance: float = DEFAULT_MIN_DISTANCE_MM,
               threshold: float = 0.0, space: str = "MNI") -> PeakTable:  # fmt: skip
    """The `n` strongest positive local maxima at least `min_distance` mm apart, strongest first.

    A voxel is a peak when no voxel within `min_distance` mm is higher (a max filter on an ellipsoid
    footprint in voxels); plateaus and near ties are thinned greedily by distance in mm, through the affine.
    `regions` (a `RegionAtlas`, or anything with `name_at(voxel)`) names each peak's region; blank without one.
    """
    values = check_volume(values, "map")
    affine = check_affine(affine)
    if n < 1 or min_distance < 0:
        raise DataError(f"n={n}, min_distance={min_distance}: ask for at least one peak, at a distance ≥ 0 mm")
    headers = [h.replace("(mm)", f"({space} mm)") if h.startswith("x") else h for h in PEAK_HEADERS]
    note = map_note(values, max(threshold, np.finfo(np.float32).tiny))
    if note:
        return PeakTable(headers, [], [], note)
    clean = np.where(np.isfinite(values), values, -np.inf)
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    radius = np.maximum(np.floor(min_distance / zooms), 0).astype(int)  # voxels each way, per axis
    grid = np.indices(2 * radius + 1).reshape(3, -1).T - radius  # (K, 3) offsets
    footprint = np.zeros(2 * radius + 1, bool)
    inside = ((grid * zooms) ** 2).sum(axis=1) <= min_distance**2
    footprint[tuple((grid[inside] + radius).T)] = True
    local_max = (clean == ndimage.maximum_filter(clean, footprint=footprint, mode="constant", cval=-np.inf))
    candidates = np.argwhere(local_max & (clean > threshold) & (clean > 0))  # (P, 3)
    order = np.argsort(-clean[tuple(candidates.T)], kind="stable")
    kept: list[np.ndarray] = []
    for voxel in candidates[order]:
        xyz = voxel_to_mm(affine, voxel)
        if all(np.linalg.norm(xyz - voxel_to_mm(affine, other)) >= min_distance for other in kept):
            kept.append(voxel)
        if len(kept) == n:
            break
    rows, voxels = [], []
    for rank, voxel in enumerate(kept, start=1):
        x, y, z = voxel_to_mm(affine, voxel)
        region = regions.name_at(tuple(voxel)) if regions is not None else ""
        rows.append([rank, round(float(x), 1), round(float(y), 1), round(float(z), 1),
                     round(float(clean[tuple(voxel)]), 4), region])  # fmt: skip
        voxels.append(tuple(int(v) for v in voxel))
    if not rows:
        note = f"No positive peak above {threshold:g}: the map has only negative or sub-threshold values."
    return PeakTable(headers, rows, voxels, note)


