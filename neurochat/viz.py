"""Figures and downloads for the explorer: a rotatable 3D glass brain, nilearn's static glass brain,
labelled image strips, and the files people take home. No UI framework here (the app wires these in).

    figure = glass_brain_3d(heatmap, threshold=0.5)         # plotly: fsaverage5 pial + heat points
    figure = static_glass_brain(heatmap, threshold=0.5)     # matplotlib: nilearn plot_glass_brain "lyrz"
    strip = image_strip([prior, final], ["VAE prior", "final"])

The 3D view is nilearn's bundled fsaverage5 pial meshes (offline) as two translucent `Mesh3d` traces,
and the top heatmap voxels (native voxel → MNI mm through the subject's transform) as one `Scatter3d`,
capped in size so the figure stays small enough to send and quick to build (the app's waits are
measured by `python -m neurochat.bench app`). A heatmap without a known MNI transform (real NSD without one) is drawn in the
subject's scanner space, with no brain outline, and the figure says so.
"""

from __future__ import annotations

import json
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from neurochat.localize import Heatmap  # imported where used: `import neurochat.viz` stays light

DEFAULT_THRESHOLD = 0.5  # heatmaps are scaled to [0, 1]; the upper half reads as "where the concept is"
DEFAULT_MAX_POINTS = 2500  # heat points in the 3D view: enough to see blobs, small enough to stay fast
FIGURE_HEIGHT = 300  # px; plotly needs an explicit height inside a layout column
_MESH_OPACITY = 0.12  # translucent enough to see heat points through the far hemisphere
_MESH_COLOR = "#9aa4b1"
_HEAT_COLORSCALE = "YlOrRd"
_STRIP_LABEL_PX = 18  # label band above each picture in an image strip
_STRIP_MIN_SIDE = 192  # small demo pictures (64 px) are enlarged so the labels stay readable


# -- 3D glass brain (plotly) ---------------------------------------------------------------------


@lru_cache(maxsize=1)
def _pial_meshes() -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """fsaverage5 pial meshes (left, right) as (vertices mm float32 (V, 3), faces int32 (F, 3)).

    Bundled with nilearn, so nothing is downloaded; loaded once per process.
    """
    from nilearn.datasets import load_fsaverage

    pial = load_fsaverage("fsaverage5")["pial"]
    return tuple(
        (np.asarray(pial.parts[side].coordinates, np.float32), np.asarray(pial.parts[side].faces, np.int32))
        for side in ("left", "right")
    )


def heat_points(heatmap: Heatmap, threshold: float, max_points: int = DEFAULT_MAX_POINTS):
    """The heatmap's voxels at or above `threshold`, strongest first, at most `max_points`.

    Returns (xyz, values, space, above): xyz (P, 3) float32 mm, values (P,), space "MNI" when the
    subject's transform is known, else "native" (scanner mm of the NIfTI affine), and `above`, the
    number of voxels at or above the threshold before the cap.
    """
    values = np.asarray(heatmap.native, np.float32)
    ijk = np.argwhere((values >= threshold) & (values > 0))  # (P, 3) voxel indices
    above = len(ijk)
    strength = values[tuple(ijk.T)]
    order = np.argsort(-strength, kind="stable")[:max_points]
    ijk, strength = ijk[order], strength[order]
    transform, space = (heatmap.to_mni, "MNI") if heatmap.to_mni is not None else (heatmap.affine, "native")
    xyz = ijk @ np.asarray(transform)[:3, :3].T + np.asarray(transform)[:3, 3]  # voxel → mm
    return xyz.astype(np.float32), strength, space, above


def glass_brain_3d(heatmap: Heatmap, threshold: float = DEFAULT_THRESHOLD, max_points: int = DEFAULT_MAX_POINTS,
                   height: int = FIGURE_HEIGHT):  # fmt: skip
    """A rotatable plotly figure: translucent fsaverage5 pial surfaces and the concept's hottest voxels."""
    import plotly.graph_objects as go

    xyz, strength, space, above = heat_points(heatmap, threshold, max_points)
    traces = []
    if space == "MNI":  # the template surfaces only line up with MNI coordinates
        for side, (vertices, faces) in zip(("left", "right"), _pial_meshes(), strict=True):
            traces.append(go.Mesh3d(
                x=vertices[:, 0], y=vertices[:, 1], z=vertices[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                color=_MESH_COLOR, opacity=_MESH_OPACITY, name=f"{side} hemisphere", hoverinfo="skip",
                lighting={"ambient": 0.6, "diffuse": 0.5, "specular": 0.1}, showscale=False,
            ))  # fmt: skip
    traces.append(go.Scatter3d(
        x=xyz[:, 0], y=xyz[:, 1], z=xyz[:, 2], mode="markers", name=heatmap.concept,
        marker={"size": 3, "color": strength, "colorscale": _HEAT_COLORSCALE, "cmin": threshold, "cmax": 1.0,
                "opacity": 0.9, "colorbar": {"title": {"text": "heat"}, "thickness": 8, "len": 0.5, "x": 0.98}},
        hovertemplate="x %{x:.0f} y %{y:.0f} z %{z:.0f} mm<br>heat %{marker.color:.2f}<extra></extra>",
    ))  # fmt: skip
    shown = f"{len(xyz):,} of {above:,}" if above > len(xyz) else f"{above:,}"
    note = f'"{heatmap.concept}" in {heatmap.subject}: {shown} voxels ≥ {threshold:.2f}'
    if space == "native":
        note += f"<br>no MNI transform known for {heatmap.subject}: scanner space, no brain outline"
    hidden_axis = {"visible": False, "showbackground": False}
    figure = go.Figure(traces)
    figure.update_layout(
        height=height, margin={"l": 0, "r": 0, "t": 0, "b": 0}, showlegend=False, paper_bgcolor="rgba(0,0,0,0)",
        scene={"xaxis": hidden_axis, "yaxis": hidden_axis, "zaxis": hidden_axis, "aspectmode": "data",
               "camera": {"eye": {"x": -1.25, "y": -0.7, "z": 0.45}}},  # from the left and behind: occipital cortex
        annotations=[{"text": note, "x": 0, "y": 1, "xref": "paper", "yref": "paper", "xanchor": "left",
                      "yanchor": "top", "showarrow": False, "align": "left", "font": {"size": 11}}],
        uirevision="brain",  # keep the viewer's rotation when the threshold changes
    )  # fmt: skip
    return figure


# -- static glass brain (nilearn) ----------------------------------------------------------------


def static_glass_brain(heatmap: Heatmap, threshold: float = DEFAULT_THRESHOLD, width_in: float = 7.0,
                       height_in: float = 2.4):  # fmt: skip
    """nilearn's `plot_glass_brain` of the heatmap in MNI space (left, axial, right, coronal views).

    Returns a matplotlib Figure; close it (`matplotlib.pyplot.close`) once saved. Without a known MNI
    transform the figure says that only the native-space map exists.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)  # headless: never open a window
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width_in, height_in), dpi=100)
    if heatmap.to_mni is None:
        figure.text(0.5, 0.5, f"No MNI transform is known for {heatmap.subject}:\nonly the native-space heatmap "
                    "exists (see the 3D view and the native NIfTI download).", ha="center", va="center")  # fmt: skip
        return figure
    import nibabel as nib
    from nilearn.plotting import plot_glass_brain

    # The native map with the voxel → MNI mm affine is the same image as `heatmap.to_mni_nifti()`
    # for nilearn's projections, without first resampling the 1.1M voxels of the MNI template grid.
    in_mni_mm = nib.Nifti1Image(np.asarray(heatmap.native, np.float32), np.asarray(heatmap.to_mni, np.float64))
    plot_glass_brain(in_mni_mm, figure=figure, display_mode="lyrz", plot_abs=False, threshold=threshold,
                     vmin=0.0, vmax=1.0, cmap="YlOrRd", colorbar=True, annotate=False,
                     title=f'"{heatmap.concept}" · {heatmap.subject}')  # fmt: skip
    return figure


def figure_to_image(figure) -> np.ndarray:
    """A matplotlib Figure rendered to uint8 RGB (H, W, 3)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


# -- image strips ----------------------------------------------------------------------------------


def image_strip(images: list[np.ndarray], labels: list[str], gap: int = 6) -> np.ndarray:
    """Pictures side by side on white, each under its label, uint8 (H, W, 3) (for the PNG download)."""
    from PIL import Image, ImageDraw

    if len(images) != len(labels) or not images:
        raise ValueError(f"{len(images)} images for {len(labels)} labels")
    side = max(_STRIP_MIN_SIDE, *(max(image.shape[:2]) for image in images))
    tiles = []
    for image, label in zip(images, labels, strict=True):
        tile = Image.new("RGB", (side, side + _STRIP_LABEL_PX), "white")
        picture = Image.fromarray(np.asarray(image, np.uint8)).resize((side, side), Image.Resampling.LANCZOS)
        tile.paste(picture, (0, _STRIP_LABEL_PX))
        ImageDraw.Draw(tile).text((4, 3), label, fill="black")
        tiles.append(tile)
    strip = Image.new("RGB", (len(tiles) * side + (len(tiles) - 1) * gap, side + _STRIP_LABEL_PX), "white")
    for index, tile in enumerate(tiles):
        strip.paste(tile, (index * (side + gap), 0))
    return np.asarray(strip)


# -- downloads -------------------------------------------------------------------------------------


def download_dir(prefix: str = "neurochat-") -> Path:
    """A fresh folder under the system temp dir (the web app may serve files from there)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def safe_name(text: str) -> str:
    """A file-name-safe version of a label: 'teddy bear' → 'teddy-bear'."""
    keep = "".join(c if c.isalnum() or c in "-_." else "-" for c in text.strip().lower())
    return "-".join(part for part in keep.split("-") if part) or "untitled"


def save_png(image: np.ndarray, folder: str | Path, name: str) -> Path:
    from PIL import Image

    path = Path(folder) / f"{safe_name(name)}.png"
    staging = path.with_suffix(".tmp.png")
    Image.fromarray(np.asarray(image, np.uint8)).save(staging)
    os.replace(staging, path)  # a reader never sees a half-written file
    return path


def save_heatmap(heatmap: Heatmap, folder: str | Path) -> tuple[Path, Path | None]:
    """The heatmap as NIfTI: native space always, MNI152 2 mm when the subject's transform is known."""
    import nibabel as nib

    def save(image, path: Path) -> Path:
        staging = path.with_name(f".staging-{path.name}")  # same extension: nibabel picks the format from it
        nib.save(image, staging)
        os.replace(staging, path)  # a reader (the web app copying it) never sees a half-written file
        return path

    stem = f"heatmap_{safe_name(heatmap.concept)}_{safe_name(heatmap.subject)}"
    native = save(heatmap.to_nifti(), Path(folder) / f"{stem}_native.nii.gz")
    if heatmap.to_mni is None:
        return native, None
    return native, save(heatmap.to_mni_nifti(), Path(folder) / f"{stem}_MNI152.nii.gz")


def save_json(payload, folder: str | Path, name: str) -> Path:
    path = Path(folder) / f"{safe_name(name)}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False, default=str) + "\n")
    os.replace(tmp, path)
    return path


def warm_up() -> None:
    """Load the meshes and the plotting modules once (the first figure otherwise takes seconds)."""
    from neurochat.localize import MNI_GRID_2MM, Heatmap

    _pial_meshes()
    shape, affine = MNI_GRID_2MM
    native = np.zeros((8, 8, 8), np.float32)
    native[4, 4, 4] = 1.0
    heatmap = Heatmap("warm-up", "none", native, affine, to_mni=affine)
    glass_brain_3d(heatmap, 0.5).to_json()
    import matplotlib.pyplot as plt

    figure = static_glass_brain(heatmap, 0.5)
    figure_to_image(figure)
    plt.close(figure)
