"""SimNSD writes NSD's exact layout, deterministically, with a ground truth that the betas follow."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from neurochat.nsd import NSDDataset, layout
from neurochat.sim.concepts import CONCEPT_NAMES, OBJECTS_BY_NAME, SCENES
from neurochat.sim.config import SIZES, SUBJECTS
from neurochat.sim.generate import generate
from neurochat.sim.scenes import Scene, sample_scene

NSD_PATHS = [
    "nsddata/experiments/nsd/nsd_expdesign.mat",
    "nsddata/experiments/nsd/nsd_stim_info_merged.csv",
    "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5",
]
PER_SUBJECT = [
    "nsddata/ppdata/{s}/func1pt8mm/roi/nsdgeneral.nii.gz",
    "nsddata/ppdata/{s}/func1pt8mm/brainmask.nii.gz",
    "nsddata/ppdata/{s}/behav/responses.tsv",
    "nsddata_betas/ppdata/{s}/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session01.nii.gz",
    "nsddata_betas/ppdata/{s}/func1pt8mm/betas_fithrf_GLMdenoise_RR/betas_session01.hdf5",
    "simnsd/{s}/concept_maps.nii.gz",
]


def test_small_tree_has_nsd_paths_four_subjects_and_answer_key(sim_root):
    for relative in NSD_PATHS + ["simnsd/scenes.json", "simnsd/simnsd.json"]:
        assert (sim_root / relative).is_file(), relative
    for subject in SUBJECTS:
        for pattern in PER_SUBJECT:
            assert (sim_root / pattern.format(s=subject)).is_file(), pattern.format(s=subject)
    grids = {tuple(nib.load(sim_root / layout.brainmask(s)).shape) for s in SUBJECTS}
    assert len(grids) == 4, f"subjects should have different native grids, got {grids}"
    key = json.loads((sim_root / "simnsd/simnsd.json").read_text())
    assert key["concepts"] == list(CONCEPT_NAMES)
    assert set(key["subjects"]) == set(SUBJECTS)
    affines = [np.array(key["subjects"][s]["native_to_mni"]) for s in SUBJECTS]
    assert not np.allclose(affines[0], affines[1]), "each subject needs its own affine to MNI"


def test_small_generates_a_complete_tree(tmp_path):
    # its speed is printed by `python -m neurochat.sim` (README), not asserted here
    root = generate(tmp_path / "t", size="small", seed=3)
    assert (Path(root) / "nsddata/experiments/nsd/nsd_expdesign.mat").exists()


def _beta_bytes(root, subject="subj02"):
    folder = root / layout.betas_dir(subject)
    nifti = (folder / "betas_session01.nii.gz").read_bytes()
    with h5py.File(folder / "betas_session01.hdf5") as f:
        hdf5 = f["betas"][()]
    return nifti, hdf5


def test_same_seed_identical_betas_other_seed_different(sim_root, tmp_path):
    again = generate(tmp_path / "again", size="small", seed=0, workers=1)  # also: workers do not matter
    other = generate(tmp_path / "other", size="small", seed=1)
    nifti0, hdf0 = _beta_bytes(sim_root)
    nifti1, hdf1 = _beta_bytes(again)
    nifti2, hdf2 = _beta_bytes(other)
    assert nifti0 == nifti1, "same seed must give byte-identical .nii.gz betas"
    assert np.array_equal(hdf0, hdf1)
    assert nifti0 != nifti2 and not np.array_equal(hdf0, hdf2)
    for relative in NSD_PATHS:
        assert (sim_root / relative).read_bytes() == (again / relative).read_bytes(), relative


def test_scene_graphs_captions_and_boxes_agree(sim_root):
    scenes = [Scene.from_json(s) for s in json.loads((sim_root / "simnsd/scenes.json").read_text())]
    data = NSDDataset(sim_root)
    for scene in scenes[:20]:
        assert scene.scene in SCENES
        assert 1 <= len(scene.objects) <= 3
        captions = data.captions(scene.image_id)
        assert captions == scene.captions and len(captions) == 5
        for caption in captions:  # every caption names every object
            for obj in scene.objects:
                assert obj.name in caption or OBJECTS_BY_NAME[obj.name].plural_name in caption, caption
        boxes = data.boxes(scene.image_id)
        assert len(boxes) == sum(o.count for o in scene.objects)
        for box in boxes:
            x, y, w, h = box["bbox"]
            assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
    # scene k is the same whether drawn alone or with the tree
    assert sample_scene(0, 5).to_json() == scenes[5].to_json()


def test_concept_maps_live_inside_nsdgeneral(sim_root):
    for subject in SUBJECTS:
        maps = np.asarray(nib.load(sim_root / f"simnsd/{subject}/concept_maps.nii.gz").dataobj)
        nsdgeneral = np.asarray(nib.load(sim_root / layout.nsdgeneral(subject)).dataobj)
        assert maps.shape == (*nsdgeneral.shape, len(CONCEPT_NAMES))
        assert set(np.unique(nsdgeneral)) <= {-1, 0, 1}
        outside = maps[nsdgeneral != 1]
        assert np.all(outside == 0)
        assert (maps.max(axis=(0, 1, 2)) > 0.3).all(), "every concept needs a map"


def test_betas_follow_the_ground_truth(sim_root):
    """Voxels selective for a concept respond more on trials that show it (the encoding model holds)."""
    data = NSDDataset(sim_root)
    scenes = json.loads((sim_root / "simnsd/scenes.json").read_text())
    subject = "subj01"
    table = data.trials(subject)
    betas = data.read_trials(subject, table.trial)  # (n, X, Y, Z)
    maps = np.asarray(nib.load(sim_root / f"simnsd/{subject}/concept_maps.nii.gz").dataobj)
    present = [set(o["name"] for o in scenes[i]["objects"]) | {scenes[i]["scene"]} for i in table.nsd_id]
    differences = []
    for concept in CONCEPT_NAMES:
        region = maps[..., CONCEPT_NAMES.index(concept)] > 0.5
        shown = np.array([concept in p for p in present])
        if region.any() and 3 <= shown.sum() <= len(shown) - 3:
            response = betas[:, region].mean(axis=1)
            differences.append(response[shown].mean() - response[~shown].mean())
    assert len(differences) >= 10
    assert np.median(differences) > 0.3
    assert np.mean(np.array(differences) > 0) >= 0.8


def test_demo_size_is_bounded():
    config = SIZES["demo"]
    assert config.n_sessions * config.trials_per_session == 1500
    assert config.trials_per_session == 750  # NSD's session length


def test_calibration_reads_the_betas_generate_writes_and_scores_decodability(sim_root):
    """The calibration simulates in memory exactly what `generate` writes, and a linear reader of clean
    betas identifies more pictures than one of noisy betas."""
    import dataclasses

    import torch

    from neurochat.sim.brain import ConceptBlobs, image_features
    from neurochat.sim.calibrate import linear_decodability, simulate_visual_betas
    from neurochat.sim.generate import Design
    from neurochat.sim.render import render_scene

    config = SIZES["small"]
    design = Design.sample(config, 0)
    scenes = [sample_scene(0, i) for i in range(config.n_images)]
    images = np.stack([render_scene(scene, config.image_size) for scene in scenes])
    betas, shown = simulate_visual_betas(config, 0, 0, design, image_features(images), scenes, ConceptBlobs.sample(0))
    dataset = NSDDataset(sim_root, zscore=True)
    visual = np.flatnonzero(dataset.nsdgeneral("subj01").reshape(-1) > 0)
    written = dataset.read_trials("subj01", np.arange(len(shown)), voxels=visual)
    assert np.array_equal(dataset.trials("subj01").nsd_id, shown)
    assert np.corrcoef(betas.reshape(-1), written.reshape(-1))[0, 1] > 0.999  # int16 rounding aside

    class PixelVision:  # a stand-in CLIP: the picture's mean colour per quadrant
        def image_embeddings(self, pictures):
            quadrants = pictures.reshape(len(pictures), 2, pictures.shape[1] // 2, 2, pictures.shape[2] // 2, 3)
            return torch.as_tensor(quadrants.mean(axis=(2, 4)).reshape(len(pictures), -1) - 128.0)

    noisy = linear_decodability(config, 0, PixelVision(), subjects=[0], ridge=10.0)
    clean = linear_decodability(dataclasses.replace(config, noise_smooth=0.01, noise_white=0.01, session_offset=0.0), 0,
                                PixelVision(), subjects=[0], ridge=10.0)  # fmt: skip
    assert set(noisy) >= {"identification_averaged", "identification_single", "objects_averaged", "meets_targets"}
    assert clean["identification_averaged"] > noisy["identification_single"]
    assert clean["objects_averaged"] >= noisy["objects_single"]
