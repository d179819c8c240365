"""The slice viewer: coordinates through the affine, clicks back to voxels, peaks, L/R, bad input."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from neurochat.app import viewer
from neurochat.app.slices import _orientation, edge_letters, native_to_ras, panel_slice, to_ras
from neurochat.errors import DataError

SHAPE = (20, 24, 18)
# 3 mm voxels, i → x (right), j → y (anterior), k → z (superior); voxel (10, 13, 6) is at MNI (0, 0, 0)
AFFINE = np.array([[3.0, 0, 0, -30], [0, 3, 0, -39], [0, 0, 3, -18], [0, 0, 0, 1]])
VIOLET = np.array([0xB3, 0x88, 0xFF]) * viewer._MARKED_ALPHA  # a marked voxel over a black underlay


def _flipped_x(affine: np.ndarray) -> np.ndarray:
    """The same grid with i running right to left (the other common storage order)."""
    flipped = affine.copy()
    flipped[0, 0] = -flipped[0, 0]
    flipped[0, 3] = -flipped[0, 3]
    return flipped


def _rotated(affine: np.ndarray, degrees: float = 7.0) -> np.ndarray:
    """A few degrees about z, as SimNSD's subjects are to MNI."""
    a = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    return rotation @ affine


def _violet_centre(image: np.ndarray, box) -> tuple[float, float] | None:
    """The centre (x, y) of the marked (violet) pixels inside one panel's box."""
    crop = image[box.top : box.top + box.height, box.left : box.left + box.width].astype(float)
    near = np.abs(crop - VIOLET).max(axis=-1) < 25
    if not near.any():
        return None
    rows, cols = np.nonzero(near)
    return box.left + cols.mean(), box.top + rows.mean()


# -- coordinates ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("affine", [AFFINE, _flipped_x(AFFINE), _rotated(AFFINE)], ids=["ras", "las", "rotated"])
def test_voxel_and_mni_round_trip(affine):
    for voxel in [(0, 0, 0), (10, 13, 6), (19, 23, 17), (3, 17, 11)]:
        xyz = viewer.voxel_to_mm(affine, voxel)
        assert viewer.mm_to_voxel(affine, xyz, SHAPE) == voxel
        shown = viewer.readout(np.ones(SHAPE), affine, voxel)
        np.testing.assert_allclose(shown.xyz, xyz)
    assert tuple(viewer.voxel_to_mm(AFFINE, (10, 13, 6))) == (0.0, 0.0, 0.0)


def test_readout_names_coordinate_value_and_region():
    values = np.zeros(SHAPE, np.float32)
    values[12, 5, 9] = 0.75
    labels = np.zeros(SHAPE, np.int16)
    labels[12, 5, 9] = 2
    atlas = viewer.RegionAtlas([(labels, {2: "right higher visual cortex"})], "test")
    shown = viewer.readout(values, AFFINE, (12, 5, 9), regions=atlas)
    assert shown.xyz == (6.0, -24.0, 9.0) and shown.value == pytest.approx(0.75)
    assert shown.text() == "MNI (6, -24, 9) mm · voxel (12, 5, 9) · value 0.75 · right higher visual cortex"


def test_a_point_outside_the_grid_is_refused_with_the_extent():
    with pytest.raises(DataError, match=r"outside this volume, which spans x -30…27"):
        viewer.mm_to_voxel(AFFINE, (90, 0, 0), SHAPE)


# -- clicks ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["neurological", "radiological"])
@pytest.mark.parametrize("affine", [AFFINE, _flipped_x(AFFINE)], ids=["ras", "las"])
def test_a_click_on_a_drawn_voxel_maps_back_to_it(affine, convention):
    planted = (4, 17, 11)
    marked = np.zeros(SHAPE, bool)
    marked[planted] = True
    drawn = viewer.orthogonal_slices(np.zeros(SHAPE), affine, planted, marked=marked, convention=convention)
    height, width = drawn.image.shape[:2]
    assert (width, height) == drawn.layout.size
    for box in drawn.layout.panels:
        centre = _violet_centre(drawn.image, box)  # where the planted voxel landed in the picture
        assert centre is not None, f"the marked voxel is not drawn on the {box.name} panel"
        assert viewer.pixel_to_voxel(drawn.layout, *centre) == planted
        assert np.allclose(viewer.voxel_to_pixel(drawn.layout, planted, box.name), centre, atol=1.5)
        # any voxel of the slice, by arithmetic: its centre pixel maps back to it
        for other in [(0, 0, 0), (19, 23, 17), (7, 3, 15)]:
            in_slice = list(other)
            cut_axis = {"sagittal": 0, "coronal": 1, "axial": 2}[box.name]  # the RAS axis = native axis here
            in_slice[cut_axis] = planted[cut_axis]
            assert viewer.pixel_to_voxel(drawn.layout, *viewer.voxel_to_pixel(drawn.layout, in_slice, box.name)) \
                == tuple(in_slice)
    assert viewer.pixel_to_voxel(drawn.layout, 2, 2) is None  # the margin
    assert viewer.pixel_to_voxel(drawn.layout, width - 5, height // 2) is None  # the colorbar


# -- left and right follow the affine -------------------------------------------------------------------


@pytest.mark.parametrize("affine", [AFFINE, _flipped_x(AFFINE)], ids=["ras", "las"])
@pytest.mark.parametrize("convention", ["neurological", "radiological"])
def test_left_and_right_follow_the_affine(affine, convention):
    blob = (3, 12, 9)  # low i: the left hemisphere with AFFINE, the right one with its x flipped
    hemisphere = "L" if viewer.voxel_to_mm(affine, blob)[0] < 0 else "R"
    marked = np.zeros(SHAPE, bool)
    marked[blob] = True
    drawn = viewer.orthogonal_slices(np.zeros(SHAPE), affine, blob, marked=marked, convention=convention)
    left_letter, right_letter = edge_letters("coronal", convention)
    assert (left_letter, right_letter) == (("L", "R") if convention == "neurological" else ("R", "L"))
    for name in ("coronal", "axial"):
        box = next(b for b in drawn.layout.panels if b.name == name)
        x, _ = _violet_centre(drawn.image, box)
        side = left_letter if x < box.left + box.width / 2 else right_letter
        assert side == hemisphere, f"{name}: the blob at x = {viewer.voxel_to_mm(affine, blob)[0]:g} mm is drawn on the {side} side"
    # the pure slice agrees: the blob's column is on the hemisphere's side
    orientation = _orientation(affine)
    plane = panel_slice(to_ras(marked.astype(float), orientation), "coronal", native_to_ras(blob, SHAPE, orientation),
                        convention)  # fmt: skip
    column = np.argwhere(plane > 0)[0][1]
    assert (left_letter if column < plane.shape[1] / 2 else right_letter) == hemisphere


def test_an_affine_with_no_orientation_is_refused():
    with pytest.raises(DataError, match="no orientation"):
        viewer.orthogonal_slices(np.zeros(SHAPE), np.diag([0.0, 3, 3, 1]))


# -- peaks -----------------------------------------------------------------------------------------------


def _blob(centre, peak: float, sigma: float = 1.2) -> np.ndarray:
    grid = np.indices(SHAPE).astype(float)
    distance2 = sum((grid[axis] - centre[axis]) ** 2 for axis in range(3))
    return (peak * np.exp(-distance2 / (2 * sigma**2))).astype(np.float32)


def test_peak_table_finds_planted_peaks_with_mni_coordinates_and_regions():
    strong, weak, shoulder = (14, 6, 8), (4, 18, 12), (15, 7, 8)  # the shoulder is 4.2 mm from the strong one
    values = _blob(strong, 1.0) + _blob(weak, 0.6) + _blob(shoulder, 0.3, sigma=0.5)
    labels = np.zeros(SHAPE, np.int16)
    labels[12:, :, :] = 1
    labels[:8, :, :] = 2
    atlas = viewer.RegionAtlas([(labels, {1: "right higher visual cortex", 2: "left early visual cortex"})], "test")
    table = viewer.peak_table(values, AFFINE, regions=atlas, n=10, min_distance=8.0, threshold=0.1)
    assert table.headers == ["#", "x (MNI mm)", "y (mm)", "z (mm)", "value", "region"]
    assert table.voxels == [strong, weak]  # strongest first; the shoulder within 8 mm is part of the strong blob
    first, second = table.rows
    assert first[1:4] == [12.0, -21.0, 6.0] and first[4] == pytest.approx(1.0, abs=0.01)
    assert first[5] == "right higher visual cortex"
    assert second[1:4] == [-18.0, 15.0, 18.0] and second[5] == "left early visual cortex"
    assert [row[0] for row in table.rows] == [1, 2] and table.note == ""
    assert viewer.peak_table(values, AFFINE, n=1).voxels == [strong]
    closer = viewer.peak_table(values, AFFINE, min_distance=3.0, threshold=0.1).voxels  # 3 mm: the shoulder is its own peak
    assert closer[0] == strong and set(closer) == {strong, weak, shoulder}
    assert viewer.peak_table(values, AFFINE).rows[0][5] == ""  # no atlas: the region stays blank


# -- empty maps and bad input -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, threshold, said",
    [(np.full(SHAPE, np.nan), 0.5, "no finite values"), (np.zeros(SHAPE), 0.5, "zero everywhere"),
     (_blob((5, 5, 5), 0.2), 0.5, "lower the threshold")],
    ids=["nan", "zero", "below-threshold"],
)  # fmt: skip
def test_empty_maps_give_a_message_not_a_crash(values, threshold, said):
    drawn = viewer.orthogonal_slices(values, AFFINE, threshold=threshold, title='"cat"')
    assert said in drawn.note and drawn.image.shape[2] == 3
    table = viewer.peak_table(values, AFFINE, threshold=threshold)
    assert table.rows == [] and said in table.note
    assert viewer.side_by_side(values, values, AFFINE, threshold=threshold).note


def test_nan_voxels_are_skipped():
    values = _blob((10, 10, 10), 1.0)
    values[0:3] = np.nan
    assert viewer.peak_table(values, AFFINE).voxels == [(10, 10, 10)]
    assert viewer.orthogonal_slices(values, AFFINE, (1, 10, 10)).note == ""
    assert np.isnan(viewer.readout(values, AFFINE, (1, 10, 10)).value)
    assert "value NaN" in viewer.readout(values, AFFINE, (1, 10, 10)).text()


@pytest.mark.parametrize("overlay", ["contour", "marked", "underlay"])
def test_an_overlay_of_the_wrong_shape_names_both_shapes(overlay):
    with pytest.raises(DataError, match=r"has shape \(4, 4, 4\) but the map has shape \(20, 24, 18\)"):
        viewer.orthogonal_slices(np.zeros(SHAPE), AFFINE, **{overlay: np.ones((4, 4, 4))})
    with pytest.raises(DataError, match=r"second map has shape \(4, 4, 4\) but the map has shape \(20, 24, 18\)"):
        viewer.side_by_side(np.zeros(SHAPE), np.ones((4, 4, 4)), AFFINE)


def test_bad_maps_crosshairs_and_conventions_are_refused_with_a_sentence():
    with pytest.raises(DataError, match=r"shape \(20, 24, 18, 3\).*pick one volume"):
        viewer.orthogonal_slices(np.zeros((*SHAPE, 3)), AFFINE)
    with pytest.raises(DataError, match=r"voxel \(20, 0, 0\) is outside the grid \(20, 24, 18\)"):
        viewer.orthogonal_slices(np.zeros(SHAPE), AFFINE, (20, 0, 0))
    with pytest.raises(DataError, match="'radiologic'.*neurological"):
        viewer.orthogonal_slices(np.zeros(SHAPE), AFFINE, convention="radiologic")
    with pytest.raises(DataError, match=r"affine has shape \(3, 3\)"):
        viewer.peak_table(np.zeros(SHAPE), np.eye(3))


def test_side_by_side_shares_the_layout_and_maps_clicks_in_both_rows():
    a, b = _blob((14, 6, 8), 1.0), _blob((4, 18, 12), 0.5)
    drawn = viewer.side_by_side(a, b, AFFINE, titles=('"cat"', '"dog"'))
    assert drawn.layout.cut == (14, 6, 8)  # the first map's peak
    assert {box.row for box in drawn.layout.panels} == {0, 1}
    for row in (0, 1):
        x, y = viewer.voxel_to_pixel(drawn.layout, (14, 6, 8), "axial", row)
        assert viewer.pixel_to_voxel(drawn.layout, x, y) == (14, 6, 8)


# -- a SimNSD subject, through the page's handlers ------------------------------------------------------


def test_simnsd_subject_regions_truth_and_click(sim_root):
    from neurochat.localize import Heatmap
    from neurochat.nsd import NSDDataset
    from neurochat.sim.truth import AnswerKey

    key, subject = AnswerKey(sim_root), "subj01"
    concept = next(name for name in key.concepts if key.concept_map(subject, name).max() > 0)
    truth = key.concept_map(subject, concept)
    to_mni = key.to_mni(subject)
    atlas = viewer.regions_for(str(sim_root), subject)
    assert atlas is not None and atlas.source == "SimNSD answer key"
    table = viewer.peak_table(truth, to_mni, regions=atlas, n=5, threshold=0.2)
    assert table.rows, table.note
    for x, _, _, _, region in (row[1:] for row in table.rows):
        assert region.endswith("higher visual cortex")  # SimNSD puts concept territories there
        assert region.startswith("right" if x > 0 else "left")

    dataset = NSDDataset(sim_root)
    zeroed = truth > 0.5 * truth.max()
    explorer = SimpleNamespace(
        localize=lambda trial, name: Heatmap(name, subject, truth, dataset.affine(subject), to_mni=to_mni),
        answer_key=key, dataset=dataset,
    )  # fmt: skip
    trial = SimpleNamespace(subject=subject, upload=None, key=(subject, 7, "averaged", None))
    session = SimpleNamespace(trial=trial, shown=concept, ablation=SimpleNamespace(zeroed=zeroed))
    handlers = viewer.ViewerHandlers(explorer)
    animal = viewer.subject_map(explorer, session, "dog")  # animals: SimNSD's floc-bodies
    assert animal.roi_label == "floc-bodies (functional-localizer ROI)" and animal.roi.sum() > 0
    drawn = viewer.orthogonal_slices(animal.values, animal.affine, tuple(np.argwhere(animal.roi)[0]), roi=animal.roi)
    amber = np.all(np.abs(drawn.image.astype(int) - (255, 171, 0)) < 40, axis=-1)
    assert amber.sum() > 20, "the ROI's outline is drawn"
    assert viewer.subject_map(explorer, session, "car").roi is None, "no localizer selects for vehicles"
    image, peaks, text, view = handlers.show(session, 0.3, "neurological", "", None)
    assert image.ndim == 3 and peaks["data"] and view.layout.cut == table.voxels[0]
    assert text.startswith("**MNI (") and f"true map {truth.max():.3g}" in text and "zeroed by the ablation" in text
    assert "higher visual cortex" in text

    target = table.voxels[-1]
    box = next(b for b in view.layout.panels if b.name == "axial")
    in_slice = (target[0], target[1], view.layout.cut[2])  # a voxel of the axial slice drawn
    x, y = viewer.voxel_to_pixel(view.layout, in_slice, "axial")
    assert box.left <= x < box.left + box.width
    _, _, text, moved = handlers.click(session, 0.3, "neurological", "", view, SimpleNamespace(index=[x, y]))
    assert moved.layout.cut == in_slice and f"voxel {in_slice}" in text
    _, _, text, moved = handlers.goto(session, 0.3, "neurological", "", view, "0, 0")
    assert text.startswith("⚠️ '0, 0' is not a coordinate") and moved is view
    mni = viewer.voxel_to_mm(to_mni, target)
    _, _, text, moved = handlers.goto(session, 0.3, "neurological", "", view, ", ".join(f"{v:.2f}" for v in mni))
    assert moved.layout.cut == target
    _, _, text, moved = handlers.pick_peak(session, 0.3, "radiological", "", view, SimpleNamespace(index=[1, 0]))
    assert moved.layout.cut == table.voxels[1] and moved.layout.convention == "radiological"
    image, _, text, both = handlers.show(session, 0.3, "neurological", concept, view)
    import os
    if os.environ.get("VIEWER_PNG"):  # to look at the pictures: VIEWER_PNG=/tmp/viewer pytest tests/test_viewer.py
        from PIL import Image
        Image.fromarray(handlers.show(session, 0.3, "neurological", "", view)[0]).save(os.environ["VIEWER_PNG"] + "_one.png")
        Image.fromarray(image).save(os.environ["VIEWER_PNG"] + "_two.png")
    assert {b.row for b in both.layout.panels} == {0, 1}

    nothing = SimpleNamespace(trial=trial, shown=None, ablation=None)
    image, peaks, text, _ = viewer.viewer_panel(explorer, nothing)
    assert image is None and peaks["data"] == [] and text.startswith("Locate a concept first")


def test_gradio_passes_the_click_to_the_handlers():
    """Gradio fills a parameter annotated `gr.SelectData` with the click: the annotation must resolve."""
    import gradio as gr
    from gradio import utils

    handlers = viewer.ViewerHandlers(explorer=None)
    for method in (handlers.click, handlers.pick_peak):
        assert utils.get_type_hints(method)["evt"] is gr.SelectData


def test_nsd_roi_files_name_regions(tmp_path):
    """Real NSD: roi/*.nii.gz named by FreeSurfer's colour tables; the most specific file wins."""
    import nibabel as nib

    from neurochat.nsd import layout

    roi = tmp_path / layout.nsdgeneral("subj01").parent
    roi.mkdir(parents=True)
    visual = np.zeros(SHAPE, np.int16)
    visual[2:5, 2:5, 2:5] = 1
    visual[10:12, 2:5, 2:5] = 7  # not in the colour table
    general = np.full(SHAPE, -1, np.int16)
    general[:12, :8, :8] = 1
    for name, data in [("prf-visualrois", visual), ("nsdgeneral", general), ("lh.prf-visualrois", visual * 0 + 3)]:
        nib.save(nib.Nifti1Image(data, AFFINE), roi / f"{name}.nii.gz")
    labels = tmp_path / "nsddata" / "freesurfer" / "subj01" / "label"
    labels.mkdir(parents=True)
    (labels / "prf-visualrois.mgz.ctab").write_text("0 Unknown\n1 V1v\n2 V1d\n")
    atlas = viewer.nsd_roi_regions(tmp_path, "subj01")
    assert atlas.source == "NSD roi/ files" and len(atlas.layers) == 2  # the lh./rh. halves are skipped
    assert atlas.name_at((3, 3, 3)) == "V1v"
    assert atlas.name_at((10, 3, 3)) == "prf-visualrois 7"
    assert atlas.name_at((7, 3, 3)) == "nsdgeneral"
    assert atlas.name_at((15, 20, 15)) == ""
    assert viewer.nsd_roi_regions(tmp_path / "elsewhere", "subj01") is None


def test_an_upload_without_mni_transform_is_shown_in_scanner_space():
    from neurochat.localize import Heatmap

    heat = _blob((10, 10, 10), 1.0)
    volume = _blob((9, 9, 9), 3.0) - 1.0
    explorer = SimpleNamespace(
        localize=lambda trial, name: Heatmap(name, "upload:x.nii.gz", heat, AFFINE, to_mni=None, method="gradcam"),
        features=lambda trial: SimpleNamespace(volume=volume), answer_key=None,
    )  # fmt: skip
    trial = SimpleNamespace(subject="upload:x.nii.gz", upload="x.nii.gz#1", key=("upload", None, "upload", "x#1"))
    session = SimpleNamespace(trial=trial, shown="cat", ablation=None)
    shown = viewer.subject_map(explorer, session, "cat")
    assert shown.space == "scanner" and shown.regions is None and shown.truth is None
    assert shown.underlay_label == "|β| of this volume" and np.allclose(shown.underlay, np.abs(volume))
    image, peaks, text, view = viewer.viewer_panel(explorer, session, threshold=0.5)
    assert text.startswith("**scanner (0, -9, 12) mm** · voxel (10, 10, 10)")
    assert peaks["headers"][1] == "x (scanner mm)" and peaks["data"][0][5] == ""
