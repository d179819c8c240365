"""A slice viewer with neuroscientists' conventions, beside the 3D brain: orthogonal slices through a
crosshair on an anatomical underlay, L/R labels that follow the affine, a colorbar and a threshold; the
true concept map's contour (SimNSD's answer key), the concept's functional-localizer ROI (NSD's floc-*
files, or SimNSD's) and an ablation's zeroed voxels as overlays; a click
that reads out the coordinate and the value; a table of peaks with region names; two concepts side by
side on one colour scale. Server-rendered with matplotlib (no template is downloaded).

    shown = orthogonal_slices(heat, to_mni, voxel=(20, 14, 18), underlay=anatomy, threshold=0.5)
    shown.image                                        # uint8 (H, W, 3) for a gr.Image
    voxel = pixel_to_voxel(shown.layout, x, y)         # a click on it (gr.SelectData.index)
    readout(heat, to_mni, voxel, regions=atlas).text() # "MNI (34, -62, -10) mm · voxel (20, 14, 18) · value 0.83 · …"
    peak_table(heat, to_mni, regions=atlas).rows       # rows for a gr.Dataframe

The geometry, the readout and the peaks are in `slices.py`; the regions and the anatomical underlay in
`regions.py`; the handlers the page calls are here.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import gradio as gr
import numpy as np

from neurochat.app.problems import sentence
# the regions, the geometry and the numbers are re-exported: the viewer's API is here
from neurochat.app.regions import RegionAtlas, nsd_roi_regions, regions_for, simnsd_regions, template_underlay
from neurochat.app.slices import (
    COLORBAR_PX, CONVENTIONS, FOOTER_PX, PEAK_HEADERS, PanelBox, PeakTable, Readout, Rendered, SliceLayout,
    check_affine, check_same_grid, check_volume, default_cut, edge_letters, map_note, mm_to_voxel, native_to_ras,
    panel_slice, peak_table, pixel_to_voxel, plan, readout, to_ras, voxel_to_mm, voxel_to_pixel,
)  # fmt: skip
from neurochat.errors import DataError, NeuroChatError
from neurochat.floc import read_floc_roi, roi_of

log = logging.getLogger("neurochat.app")

DEFAULT_CONTOUR_FRACTION = 0.5  # the true map's outline at half its maximum: where the territory "is"
_DPI = 100
_CROSSHAIR = "#00e676"
_CONTOUR = "#00e5ff"
_MARKED = "#b388ff"  # an ablation's zeroed voxels: violet, far from the heat colours and the cyan contour
_MARKED_ALPHA = 0.8
_ROI = "#ffab00"  # a functional-localizer ROI's outline: amber, dashed, apart from the true map's cyan
_UNDERLAY_PERCENTILES = (2.0, 98.0)  # grey scale of the underlay: robust to a few extreme voxels
_UNDERLAY_HEADROOM = 1.3  # the brightest anatomy stays mid-grey-to-light, so the heat colours stand out
_SEQUENTIAL_CMAP = "hot"  # a map ≥ 0 (the heatmaps): the usual hot overlay on grey anatomy
_DIVERGING_CMAP = "RdBu_r"  # a signed map (betas): blue below zero, red above


def orthogonal_slices(values, affine, voxel=None, *, underlay=None, threshold: float = 0.0,
                      convention: str = "neurological", space: str = "MNI", contour=None,
                      contour_level: float | None = None, contour_label: str = "true map",
                      marked=None, marked_label: str = "zeroed voxels", title: str = "",
                      value_label: str = "value", underlay_label: str = "", vmax: float | None = None,
                      width_px: int | None = None, roi=None, roi_label: str = "localizer ROI") -> Rendered:  # fmt: skip
    """Sagittal, coronal and axial slices of `values` through `voxel` (default: its strongest voxel).

    Parameters
    ----------
    values, affine : (X, Y, Z) map and its voxel → mm affine (MNI mm when `space` is "MNI").
    voxel : native (i, j, k) of the crosshair.
    underlay : (X, Y, Z) anatomy-like volume drawn in grey beneath (the subject's T1, brain mask, mean EPI).
    threshold : |value| below it is transparent.
    convention : "neurological" (left on the left) or "radiological" (left on the right); stated on the figure.
    contour : (X, Y, Z) map outlined at `contour_level` (default half its maximum), e.g. the true concept map.
    marked : (X, Y, Z) bool voxels filled in violet, e.g. an ablation's zeroed voxels.
    roi : (X, Y, Z) bool voxels outlined dashed, e.g. the functional-localizer ROI of the concept (floc-bodies).

    Returns a `Rendered`: the picture, its layout (for `pixel_to_voxel`) and a note when the map shows nothing.
    """
    values = check_volume(values, "map")
    cut = default_cut(values) if voxel is None else voxel
    kwargs = {"width_px": width_px} if width_px else {}
    layout = plan(values.shape, affine, convention, cut, n_rows=1, **kwargs)
    return _draw(layout, affine, [(values, title)], underlay=underlay, threshold=threshold, space=space,
                 contour=contour, contour_level=contour_level, contour_label=contour_label, marked=marked,
                 marked_label=marked_label, value_label=value_label, underlay_label=underlay_label, vmax=vmax,
                 roi=roi, roi_label=roi_label)  # fmt: skip


def side_by_side(map_a, map_b, affine, voxel=None, *, titles: tuple[str, str] = ("", ""), underlay=None,
                 threshold: float = 0.0, convention: str = "neurological", space: str = "MNI",
                 value_label: str = "value", underlay_label: str = "", width_px: int | None = None) -> Rendered:  # fmt: skip
    """Two maps of one subject (e.g. two concepts) as two rows of orthogonal slices through the same voxel,
    on one colour scale and one colorbar, so that their strengths compare. The crosshair defaults to
    `map_a`'s strongest voxel."""
    map_a = check_volume(map_a, "first map")
    map_b = check_same_grid(map_b, "second map", map_a.shape)
    cut = default_cut(map_a) if voxel is None else voxel
    kwargs = {"width_px": width_px} if width_px else {}
    layout = plan(map_a.shape, affine, convention, cut, n_rows=2, **kwargs)
    return _draw(layout, affine, [(map_a, titles[0]), (map_b, titles[1])], underlay=underlay, threshold=threshold,
                 space=space, value_label=value_label, underlay_label=underlay_label)  # fmt: skip


# -- drawing ---------------------------------------------------------------------------------------------


def _colour_scale(maps: list[np.ndarray], threshold: float, vmax: float | None):
    """(colormap name, vmin, vmax) shared by every panel: diverging when a map goes below −threshold."""
    finite = [m[np.isfinite(m)] for m in maps]
    strongest = max((float(np.abs(f).max()) for f in finite if f.size), default=0.0)
    top = float(vmax) if vmax is not None else max(strongest, threshold, 1e-6)
    signed = any(f.size and float(f.min()) < -max(threshold, 0.0) and float(f.min()) < 0 for f in finite)
    if signed:
        return _DIVERGING_CMAP, -top, top
    return _SEQUENTIAL_CMAP, max(threshold, 0.0) if threshold < top else 0.0, top


def _underlay_range(underlay: np.ndarray) -> tuple[float, float]:
    inside = underlay[np.isfinite(underlay) & (underlay != 0)]
    if inside.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(inside, _UNDERLAY_PERCENTILES)
    high = high if high > low else low + 1.0
    return float(min(low, 0.0)), float(high * _UNDERLAY_HEADROOM)


def _draw(layout: SliceLayout, affine, maps: list[tuple[np.ndarray, str]], *, underlay, threshold: float, space: str,
          contour=None, contour_level=None, contour_label="", marked=None, marked_label="", value_label="value",
          underlay_label="", vmax=None, roi=None, roi_label="") -> Rendered:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg", force=False)  # headless: never open a window
    from matplotlib import patheffects
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    # 1. Check the inputs against the map's grid and put everything in RAS+ order.
    affine = check_affine(affine)
    shape = layout.shape
    threshold = float(threshold)
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"threshold {threshold}: choose a finite value ≥ 0 (|value| below it is transparent)")
    ras = lambda volume: to_ras(volume, layout.orientation)  # noqa: E731
    ras_maps = [ras(values) for values, _ in maps]
    ras_under = ras(np.nan_to_num(check_same_grid(underlay, "underlay", shape))) if underlay is not None else None
    ras_contour = ras(np.nan_to_num(check_same_grid(contour, "contour overlay", shape))) if contour is not None else None
    ras_marked = ras(check_same_grid(marked, "marked voxels", shape) > 0) if marked is not None else None
    ras_roi = ras(check_same_grid(roi, "ROI overlay", shape) > 0).astype(np.float32) if roi is not None else None
    if ras_contour is not None and contour_level is None:
        contour_level = DEFAULT_CONTOUR_FRACTION * float(ras_contour.max())
    ras_cut = native_to_ras(layout.cut, shape, layout.orientation)
    cmap, vmin, vtop = _colour_scale([values for values, _ in maps], threshold, vmax)
    norm = Normalize(vmin=vmin, vmax=vtop)
    under_low, under_high = _underlay_range(ras_under) if ras_under is not None else (0.0, 1.0)
    cut_mm = voxel_to_mm(affine, layout.cut)

    # 2. One axes per panel, placed at the planned pixel box (so clicks map back exactly).
    width, height = layout.size
    figure = Figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI, facecolor="white")
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    for box in layout.panels:
        ax = figure.add_axes((box.left / width, 1 - (box.top + box.height) / height, box.width / width,
                              box.height / height))  # fmt: skip
        ax.set_axis_off()
        extent = (0, box.n_cols, box.n_rows, 0)
        show = dict(extent=extent, interpolation="nearest", aspect="auto")
        if ras_under is not None:
            ax.imshow(panel_slice(ras_under, box.name, ras_cut, layout.convention), cmap="gray", vmin=under_low,
                      vmax=under_high, **show)  # fmt: skip
        else:
            ax.imshow(np.zeros((box.n_rows, box.n_cols)), cmap="gray", vmin=0, vmax=1, **show)
        plane = panel_slice(ras_maps[box.row], box.name, ras_cut, layout.convention)
        hidden = ~np.isfinite(plane) | (np.abs(plane) < threshold) | (plane == 0)
        ax.imshow(np.ma.masked_array(np.nan_to_num(plane), hidden), cmap=cmap, norm=norm, **show)
        if ras_marked is not None:
            zeroed = panel_slice(ras_marked, box.name, ras_cut, layout.convention)
            colour = np.zeros((*zeroed.shape, 4))
            colour[zeroed] = (*matplotlib.colors.to_rgb(_MARKED), _MARKED_ALPHA)
            ax.imshow(colour, **show)
        if ras_contour is not None:
            truth = panel_slice(ras_contour, box.name, ras_cut, layout.convention)
            if truth.min() < contour_level < truth.max():  # else the level is not crossed on this slice
                ax.contour(np.arange(box.n_cols) + 0.5, np.arange(box.n_rows) + 0.5, truth, levels=[contour_level],
                           colors=_CONTOUR, linewidths=1.3)  # fmt: skip
        if ras_roi is not None:
            inside = panel_slice(ras_roi, box.name, ras_cut, layout.convention)
            if inside.min() < 0.5 < inside.max():
                ax.contour(np.arange(box.n_cols) + 0.5, np.arange(box.n_rows) + 0.5, inside, levels=[0.5], colors=_ROI,
                           linewidths=1.3, linestyles="dashed")  # fmt: skip
        col, row = _crosshair_position(box, layout)
        ax.axvline(col, color=_CROSSHAIR, linewidth=0.8, alpha=0.85)
        ax.axhline(row, color=_CROSSHAIR, linewidth=0.8, alpha=0.85)
        ax.set_xlim(0, box.n_cols)
        ax.set_ylim(box.n_rows, 0)
        left_letter, right_letter = edge_letters(box.name, layout.convention)
        for x, letter, align in ((0.02, left_letter, "left"), (0.98, right_letter, "right")):
            ax.text(x, 0.5, letter, transform=ax.transAxes, ha=align, va="center", color="white", fontsize=11,
                    fontweight="bold", path_effects=outline)  # fmt: skip
        ax.text(0.5, 0.98, "A" if box.name == "axial" else "S", transform=ax.transAxes, ha="center", va="top",
                color="white", fontsize=9, path_effects=outline)  # fmt: skip
        axis_name, axis = {"sagittal": ("x", 0), "coronal": ("y", 1), "axial": ("z", 2)}[box.name]
        figure.text(box.left / width, 1 - (box.top - 3) / height, f"{box.name}  {axis_name} = {cut_mm[axis]:.0f} mm",
                    ha="left", va="bottom", fontsize=9)  # fmt: skip

    # 3. Titles, the colorbar, and the footer that states the convention, the space and the overlays.
    for row, (values, title) in enumerate(maps):
        note = map_note(values, threshold)
        text = f"{title} — {note}" if note and title else (title or note)
        figure.text(14 / width, 1 - (layout.row_tops[row] + 4) / height, text, ha="left", va="top", fontsize=10,
                    fontweight="bold", color="#b00020" if note else "black")  # fmt: skip
    bar_top = min(b.top for b in layout.panels)
    bar_bottom = max(b.top + b.height for b in layout.panels)
    bar = figure.add_axes(((width - COLORBAR_PX + 12) / width, 1 - bar_bottom / height, 12 / width,
                           (bar_bottom - bar_top) / height))  # fmt: skip
    colorbar = figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), cax=bar)
    colorbar.set_label(value_label + (f" (≥ {threshold:g} shown)" if threshold > 0 else ""), fontsize=8)
    colorbar.ax.tick_params(labelsize=8)
    side = "left hemisphere on the left" if layout.convention == "neurological" else "left hemisphere on the right"
    where = "MNI152 mm" if space == "MNI" else f"{space} mm (no MNI transform known)"
    first = f"{layout.convention.capitalize()} convention: {side} (from the affine) · coordinates in {where}"
    if underlay_label:
        first += f" · underlay: {underlay_label}"
    figure.text(14 / width, 1 - (height - FOOTER_PX + 4) / height, first, ha="left", va="top", fontsize=8)
    legend = [("+", _CROSSHAIR, "crosshair")]
    if ras_contour is not None:
        legend.append(("—", _CONTOUR, f"{contour_label} (outline at {contour_level:.2g})"))
    if ras_roi is not None:
        legend.append(("--", _ROI, roi_label))
    if ras_marked is not None:
        legend.append(("■", _MARKED, f"{marked_label} ({int(ras_marked.sum()):,})"))
    x, line = 14, 1 - (height - FOOTER_PX + 19) / height
    for symbol, colour, label in legend:
        figure.text(x / width, line, symbol, ha="left", va="top", fontsize=9, fontweight="bold", color=colour,
                    path_effects=[patheffects.withStroke(linewidth=1.5, foreground="#333333")])  # fmt: skip
        figure.text((x + 14) / width, line, label, ha="left", va="top", fontsize=8)
        x += 14 + 6 * len(label) + 18

    # 4. Render to pixels (the figure is not kept: a server draws many).
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    notes = [map_note(values, threshold) for values, _ in maps]
    return Rendered(image, layout, " ".join(n for n in notes if n))


def _crosshair_position(box: PanelBox, layout: SliceLayout) -> tuple[float, float]:
    """The crosshair on a panel in its data coordinates (columns, rows from the top)."""
    x, y = voxel_to_pixel(layout, layout.cut, box.name, box.row)
    return (x - box.left) / box.width * box.n_cols, (y - box.top) / box.height * box.n_rows


# -- the page's handlers --------------------------------------------------------------------------------


@dataclass
class ViewerView:
    """What the slice viewer shows now: kept in its own gr.State beside the picture, so a click maps
    through the layout that was drawn (not the one of a map shown since)."""

    key: tuple | None = None  # (trial key, concept, compared concept): a new map re-centres the crosshair
    layout: SliceLayout | None = None


@dataclass
class SubjectMap:
    """One concept's map in a recording and what the data knows around it, all in the map's native grid."""

    values: np.ndarray
    affine: np.ndarray  # voxel -> MNI mm when `space` is "MNI", else voxel -> scanner mm
    space: str
    title: str
    underlay: np.ndarray | None = None
    underlay_label: str = ""
    truth: np.ndarray | None = None  # SimNSD's true map of the concept
    zeroed: np.ndarray | None = None  # bool: the voxels an ablation set to 0
    regions: RegionAtlas | None = None
    roi: np.ndarray | None = None  # bool: the functional-localizer ROI of the concept, where the data has one
    roi_label: str = ""


def subject_map(explorer, session, concept: str) -> SubjectMap:
    """Gather a concept's heatmap (the explorer caches it) with its underlay, answer key and ablation."""
    trial = session.trial
    heatmap = explorer.localize(trial, concept)
    values = np.asarray(heatmap.native, np.float32)
    known_subject = trial.upload is None
    if heatmap.to_mni is not None:
        affine, space = heatmap.to_mni, "MNI"
        underlay, underlay_label = template_underlay(values.shape, heatmap.to_mni), "MNI152 T1 (nilearn's copy)"
    else:
        affine, space = heatmap.affine, "scanner"
        if known_subject:
            underlay, underlay_label = explorer.dataset.brainmask(trial.subject).astype(np.float32), "brain mask"
        else:
            underlay, underlay_label = np.abs(explorer.features(trial).volume), "|β| of this volume"
    whose = f"{heatmap.subject}'s encoding map" if heatmap.method == "encoding" else "GradCAM of this volume"
    found = SubjectMap(values, np.asarray(affine), space, f'"{heatmap.concept}" · {whose}', underlay, underlay_label)
    key = getattr(explorer, "answer_key", None)
    if known_subject and key is not None and heatmap.concept in key.concepts:
        found.truth = key.concept_map(trial.subject, heatmap.concept)
    ablation = getattr(session, "ablation", None)
    if ablation is not None and np.shape(ablation.zeroed) == values.shape:
        found.zeroed = ablation.zeroed
    if known_subject:
        found.regions = regions_for(str(explorer.dataset.root), trial.subject)
        roi = roi_of(heatmap.concept)
        labels = read_floc_roi(explorer.dataset.root, trial.subject, roi.name) if roi is not None else None
        if labels is not None and labels.shape == values.shape:
            found.roi, found.roi_label = labels > 0, f"{roi.name} (functional-localizer ROI)"
    return found


def viewer_panel(explorer, session, threshold: float = 0.5, convention: str = "neurological", voxel=None,
                 compare: str = "", view: ViewerView | None = None):  # fmt: skip
    """The viewer for the concept on the brain view (`session.shown`), crosshair at `voxel` (default: the
    map's strongest voxel, or where it was for the same map), optionally beside a second concept.

    Returns (picture uint8 (H, W, 3) or None, peaks for a gr.Dataframe, readout markdown, ViewerView).
    """
    view = view or ViewerView()
    empty = {"headers": PEAK_HEADERS, "data": []}
    if session is None or session.trial is None or session.shown is None:
        return None, empty, 'Locate a concept first (e.g. ask: Locate "cat"); its map then shows here.', view
    threshold = float(np.clip(0.5 if threshold is None else threshold, 0.0, 0.99))
    shown = subject_map(explorer, session, session.shown)
    other = subject_map(explorer, session, compare.strip()) if compare and compare.strip() else None
    key = (session.trial.key, session.shown, other.title if other else None)
    if voxel is None and view.layout is not None and view.key == key:
        voxel = view.layout.cut  # a redraw (threshold, convention) keeps the crosshair
    common = dict(underlay=shown.underlay, threshold=threshold, convention=convention, space=shown.space,
                  value_label="heat", underlay_label=shown.underlay_label)  # fmt: skip
    if other is None:
        drawn = orthogonal_slices(shown.values, shown.affine, voxel, contour=shown.truth, marked=shown.zeroed,
                                  title=shown.title, roi=shown.roi, roi_label=shown.roi_label, **common)  # fmt: skip
    else:
        drawn = side_by_side(shown.values, other.values, shown.affine, voxel, titles=(shown.title, other.title), **common)
    table = peak_table(shown.values, shown.affine, regions=shown.regions, threshold=threshold, space=shown.space)
    text = _readout_text(shown, other, drawn.layout.cut)
    notes = " ".join(n for n in (drawn.note, table.note) if n)
    if notes:
        text += f"  \n⚠️ {notes}" if drawn.note != table.note else f"  \n⚠️ {drawn.note}"
    return drawn.image, table.as_gradio(), text, ViewerView(key, drawn.layout)


def _readout_text(shown: SubjectMap, other: SubjectMap | None, voxel) -> str:
    here = readout(shown.values, shown.affine, voxel, space=shown.space, regions=shown.regions)
    x, y, z = (f"{v:.0f}" for v in here.xyz)
    parts = [f"**{here.space} ({x}, {y}, {z}) mm**", f"voxel {here.voxel}", f"{shown.title.split(' · ')[0]} {here.value:.3g}"]
    if other is not None:
        parts.append(f"{other.title.split(' · ')[0]} {float(other.values[here.voxel]):.3g}")
    if shown.truth is not None:
        parts.append(f"true map {float(shown.truth[here.voxel]):.3g}")
    if shown.zeroed is not None and shown.zeroed[here.voxel]:
        parts.append("zeroed by the ablation")
    if here.region:
        parts.append(here.region)
    return " · ".join(parts)


class ViewerHandlers:
    """The viewer's Gradio events. Each returns (picture, peaks, readout, view) for the outputs
    [image, dataframe, markdown, view state]; a failure becomes a sentence in the readout."""

    def __init__(self, explorer):
        self.explorer = explorer

    def show(self, session, threshold, convention, compare, view):
        """Draw (or redraw at the same crosshair) after a localization, a threshold or convention change."""
        return self._safely(lambda: viewer_panel(self.explorer, session, threshold, convention, None, compare, view), view)

    def click(self, session, threshold, convention, compare, view, evt: gr.SelectData):
        """A click on the picture moves the crosshair to the voxel under it (margins are ignored)."""
        def move():
            voxel = pixel_to_voxel(view.layout, *evt.index[:2]) if view is not None and view.layout else None
            if voxel is None:
                return gr.update(), gr.update(), gr.update(), view
            return viewer_panel(self.explorer, session, threshold, convention, voxel, compare, view)
        return self._safely(move, view)

    def goto(self, session, threshold, convention, compare, view, coordinate: str):
        """Typed coordinates "x, y, z" in the map's space (MNI mm) move the crosshair to the nearest voxel."""
        def move():
            try:
                xyz = [float(part) for part in str(coordinate).replace(",", " ").split()]
            except ValueError:
                xyz = []
            if len(xyz) != 3:
                raise DataError(f"'{coordinate}' is not a coordinate: type three numbers in mm, e.g. 34, -62, -10")
            if view is None or view.layout is None:
                raise DataError("Locate a concept first: the coordinate is looked up in its map.")
            affine = subject_map(self.explorer, session, session.shown).affine
            voxel = mm_to_voxel(affine, xyz, view.layout.shape)
            return viewer_panel(self.explorer, session, threshold, convention, voxel, compare, view)
        return self._safely(move, view)

    def pick_peak(self, session, threshold, convention, compare, view, evt: gr.SelectData):
        """A click on a row of the peak table moves the crosshair to that peak."""
        def move():
            shown = subject_map(self.explorer, session, session.shown)
            table = peak_table(shown.values, shown.affine, regions=shown.regions, threshold=float(threshold or 0))
            row = int(evt.index[0])
            if not 0 <= row < len(table.voxels):
                return gr.update(), gr.update(), gr.update(), view
            return viewer_panel(self.explorer, session, threshold, convention, table.voxels[row], compare, view)
        return self._safely(move, view)

    @staticmethod
    def _safely(work, view):
        try:
            return work()
        except NeuroChatError as error:
            return gr.update(), gr.update(), f"⚠️ {sentence(str(error))}", view
        except Exception as error:  # noqa: BLE001 — shown as a sentence, logged in full
            log.error("error in the slice viewer", exc_info=error)
            return (gr.update(), gr.update(), f"⚠️ The slice viewer failed ({error.__class__.__name__}); the server "
                    "log has the details.", view)  # fmt: skip


__all__ = [  # the viewer's API (the geometry and numbers are re-exported from slices.py)
    "CONVENTIONS", "PEAK_HEADERS", "PeakTable", "Readout", "RegionAtlas", "Rendered", "SliceLayout", "SubjectMap",
    "ViewerHandlers", "ViewerView", "mm_to_voxel", "nsd_roi_regions", "orthogonal_slices", "peak_table",
    "pixel_to_voxel", "readout", "regions_for", "side_by_side", "simnsd_regions", "subject_map", "template_underlay",
    "viewer_panel", "voxel_to_mm", "voxel_to_pixel",
]  # fmt: skip
