"""Functional-localizer ROIs: SimNSD writes them in NSD's layout, the scorer passes maps that match them,
fails maps that do not, and reads a tree with NSD's own ROI file names."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from neurochat.errors import DataError
from neurochat.floc import ANIMALS, FLOC_BY_NAME, read_floc_roi, score_floc
from neurochat.nsd import NSDDataset, layout
from neurochat.sim.truth import AnswerKey
from neurochat.vocabulary import CONCEPT_NAMES, SCENES


def _quiet(*_):
    pass


def test_simnsd_writes_localizer_rois_in_nsds_layout(sim_root):
    dataset = NSDDataset(sim_root)
    for subject in dataset.subjects:
        nsdgeneral = dataset.nsdgeneral(subject)
        places = read_floc_roi(sim_root, subject, "floc-places")
        bodies = read_floc_roi(sim_root, subject, "floc-bodies")
        early = read_floc_roi(sim_root, subject, "prf-visualrois")
        assert places.shape == bodies.shape == early.shape == nsdgeneral.shape
        assert set(np.unique(places)) == {-1, 0, 1, 2}, "OPA (1) and PPA (2), 0 elsewhere in cortex, -1 outside it"
        assert set(np.unique(bodies)) == {-1, 0, 1} and set(np.unique(early)) == {-1, 0, 1, 2}
        for roi in (places, bodies, early):
            assert np.all(nsdgeneral[roi > 0] > 0), "every ROI lies in nsdgeneral"
            assert np.array_equal(roi < 0, nsdgeneral < 0)
        assert not np.any((bodies > 0) & (early > 0)), "the animal territory is in higher visual cortex"
    table = (sim_root / layout.roi_label_table("subj01", "floc-places")).read_text().splitlines()
    assert table[:3] == ["0 Unknown", "1 OPA", "2 PPA"]


def _true_maps(root):
    key = AnswerKey(root)
    return lambda subject, concept: key.concept_map(subject, concept)


def test_the_true_concept_maps_match_the_rois_and_beat_both_nulls(sim_root):
    results = score_floc(NSDDataset(sim_root), _true_maps(sim_root), CONCEPT_NAMES, log=_quiet)
    assert set(results["rois"]) == {"floc-bodies", "floc-places"}
    for name, r in results["rois"].items():
        assert r["concepts"] == list(ANIMALS if name == "floc-bodies" else SCENES)
        for scores in (r, r["higher"]):
            assert scores["auc"] > 0.95 and scores["pointing"] == 1.0, name
            assert scores["auc"] > scores["null_auc"] and scores["auc"] > scores["random_roi_p95"], name
            assert 0.3 < scores["random_roi_auc"] < 0.7 and scores["enrichment"] > 3
    assert results["mean_auc"] > 0.95 and results["mean_auc_higher"] > 0.95


def test_maps_that_ignore_the_rois_score_at_chance(sim_root):
    rng = np.random.default_rng(0)
    dataset = NSDDataset(sim_root)
    shapes = {s: dataset.nsdgeneral(s).shape for s in dataset.subjects}
    noise = {(s, c): rng.random(shape) for s, shape in shapes.items() for c in CONCEPT_NAMES}
    results = score_floc(dataset, lambda s, c: noise[(s, c)], CONCEPT_NAMES, log=_quiet)
    for r in results["rois"].values():
        assert abs(r["auc"] - 0.5) < 0.1 and r["auc"] < r["random_roi_p95"]
    assert results["mean_auc"] < 0.6


@pytest.fixture()
def nsd_named_tree(sim_root, tmp_path):
    """The small tree with NSD's own four floc files for subj01 only, as a lab's NSD copy holds them."""
    root = tmp_path / "nsd"
    shutil.copytree(sim_root, root)
    for subject in NSDDataset(root).subjects:
        for name in ("floc-bodies", "floc-places", "prf-visualrois"):
            (root / layout.roi_file(subject, name)).unlink()
    image = nib.load(root / layout.nsdgeneral("subj01"))
    inside = np.asarray(image.dataobj) > 0
    points = np.argwhere(inside)
    faces = np.zeros(inside.shape, np.int16)
    near = points[np.argsort(((points - points[len(points) // 3]) ** 2).sum(1))[:60]]
    faces[tuple(near.T)] = 2  # FFA-1
    nib.save(nib.Nifti1Image(faces, image.affine), root / layout.roi_file("subj01", "floc-faces"))
    nib.save(nib.Nifti1Image(faces, image.affine), root / layout.roi_file("subj01", "floc-words"))
    return root, faces > 0


def test_a_tree_with_nsds_roi_files_is_scored_by_their_names(nsd_named_tree):
    root, face_roi = nsd_named_tree
    dataset = NSDDataset(root)

    def maps(subject, concept):  # "person" lives in the face ROI, every other concept elsewhere
        value = np.where(face_roi, 1.0, 0.1) if concept == "person" else np.where(face_roi, 0.1, 0.5)
        return value + 0.01 * np.random.default_rng(len(concept)).random(face_roi.shape)

    vocabulary = [*CONCEPT_NAMES, "person"]
    results = score_floc(dataset, maps, vocabulary, log=_quiet)
    assert list(results["rois"]) == ["floc-faces"] and results["rois"]["floc-faces"]["concept"] == "person"
    faces = results["rois"]["floc-faces"]
    assert faces["subjects"] == ["subj01"] and faces["auc"] > 0.99 and faces["null_auc"] < 0.1
    assert faces["higher"] is None, "no prf-visualrois in this tree: no higher-visual-cortex scores"
    assert "no concept of the vocabulary" in results["skipped"]["floc-words"]
    assert FLOC_BY_NAME["floc-words"].concepts == ()


def test_no_roi_files_or_a_wrong_grid_is_a_clear_error(nsd_named_tree):
    root, face_roi = nsd_named_tree
    dataset = NSDDataset(root)
    with pytest.raises(DataError, match="no floc ROI files"):
        score_floc(dataset, lambda s, c: np.zeros(face_roi.shape), CONCEPT_NAMES, log=_quiet)  # no "person"
    path = root / layout.roi_file("subj01", "floc-faces")
    nib.save(nib.Nifti1Image(np.zeros((3, 4, 5), np.int16), np.eye(4)), path)
    with pytest.raises(DataError, match=r"floc-faces.nii.gz has shape \(3, 4, 5\)"):
        score_floc(dataset, lambda s, c: np.zeros(face_roi.shape), [*CONCEPT_NAMES, "person"], log=_quiet)


def test_the_command_has_a_floc_subcommand(capsys):
    from neurochat.evaluate.__main__ import main

    with pytest.raises(SystemExit) as exit_info:
        main(["floc", "--help"])
    assert exit_info.value.code == 0
    assert "--json" in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_zeroing_an_roi_is_compared_with_as_many_random_voxels(request, sim_root):
    from test_app import micro_bundle_paths

    from neurochat.evaluate.floc_ablation import roi_ablation
    from neurochat.models.bundle import load_main_extractor
    from neurochat.models.unclip import load_unclip
    from neurochat.models.vision import VisionEncoders
    from neurochat.presets import get_preset
    from neurochat.reconstruct import Reconstructor

    weights, _ = micro_bundle_paths(request)
    preset = get_preset("demo", weights)
    dataset = NSDDataset(sim_root)
    results = roi_ablation(dataset, load_main_extractor(preset), Reconstructor(load_unclip(preset)),
                           VisionEncoders.from_preset(preset), CONCEPT_NAMES, max_cases=2, steps=2, log=_quiet)  # fmt: skip
    assert set(results) == {"floc-bodies", "floc-places"}
    sizes = [int(((read_floc_roi(sim_root, s, "floc-places") > 0) & (dataset.nsdgeneral(s) > 0)).sum()) for s in dataset.subjects]
    for name, r in results.items():
        assert r["n"] == 2 and 0.0 <= r["roi_beats_random"] <= 1.0
        assert np.isfinite([r["drop_roi"], r["drop_random"]]).all()
    assert min(sizes) <= results["floc-places"]["voxels"] <= max(sizes)
