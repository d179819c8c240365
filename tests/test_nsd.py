"""The NSD loader reads the real layout: design, split, betas in one order and unit, masks, text."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import scipy.io

from neurochat.nsd import NSDDataset, layout
from neurochat.nsd.__main__ import main as nsd_main
from neurochat.nsd.betas import SessionFile
from neurochat.sim.config import SIZES, SUBJECTS


def test_nifti_and_hdf5_give_the_same_float32_values(sim_root):
    from_h5 = NSDDataset(sim_root, prefer="hdf5")
    from_nii = NSDDataset(sim_root, prefer="nifti")
    assert from_h5.session_file("subj05", 2).format == "hdf5"
    assert from_nii.session_file("subj05", 2).format == "nifti"
    trials = [0, 7, 61, 119, 3]
    a = from_h5.read_trials("subj05", trials)
    b = from_nii.read_trials("subj05", trials)
    assert a.dtype == np.float32 and a.shape == (5, *from_h5.native_shape("subj05"))
    np.testing.assert_array_equal(a, b)
    # the unit is percent signal change: the stored int16 divided by 300
    with h5py.File(sim_root / layout.betas_file("subj05", 1, "hdf5")) as f:
        raw = f["betas"][7]  # (Z, Y, X)
    np.testing.assert_array_equal(a[1], raw.T.astype(np.float32) / np.float32(300))


def test_every_shared_image_has_three_repetitions(sim_root):
    data = NSDDataset(sim_root)
    for subject in SUBJECTS:
        table = data.trials(subject)
        test_images = table.test_images
        assert len(test_images) == SIZES["small"].n_shared
        for nsd_id in test_images:
            rows = table.nsd_id == nsd_id
            assert rows.sum() == 3
            assert sorted(table.repetition[rows]) == [0, 1, 2]
            # repetitions are numbered in trial order
            assert list(table.repetition[rows]) == [0, 1, 2]
    shared = [set(data.trials(s).test_images) for s in SUBJECTS]
    assert all(s == shared[0] for s in shared)
    train = [set(data.trials(s).train_images) for s in SUBJECTS]
    assert not train[0] & train[1], "training images are the subject's own"


def test_trial_command_agrees_with_the_design_file(sim_root, capsys):
    mat = scipy.io.loadmat(sim_root / layout.EXPDESIGN)
    ordering = mat["masterordering"].reshape(-1).astype(int)
    subjectim = mat["subjectim"].astype(int)
    shared = set(mat["sharedix"].reshape(-1).astype(int) - 1)
    for subject, trial in [("subj01", 0), ("subj02", 59), ("subj07", 60), ("subj05", 119)]:
        nsd_main(["trial", "--nsd-root", str(sim_root), "--subject", subject, "--index", str(trial), "--json"])
        report = json.loads(capsys.readouterr().out)
        expected = subjectim[int(subject[-2:]) - 1, ordering[trial] - 1] - 1
        assert report["nsd_id"] == expected
        assert report["shared"] == (expected in shared)
        assert report["session"] == trial // 60 + 1
        earlier = [t for t in range(trial) if subjectim[int(subject[-2:]) - 1, ordering[t] - 1] - 1 == expected]
        assert report["repetition"] == len(earlier)
        assert report["shape"] == list(NSDDataset(sim_root).native_shape(subject))
        for key in ("mean", "std"):
            assert isinstance(report[key], float)


def test_design_agrees_with_behavioural_responses(sim_root):
    data = NSDDataset(sim_root)
    table = data.trials("subj02")
    rows = np.genfromtxt(sim_root / layout.responses("subj02"), delimiter="\t", names=True)
    np.testing.assert_array_equal(rows["73KID"].astype(int) - 1, table.nsd_id)
    np.testing.assert_array_equal(rows["SESSION"].astype(int), table.session)
    np.testing.assert_array_equal(rows["ISOLD"].astype(int), table.repetition > 0)


def test_info_summary(sim_root, capsys):
    nsd_main(["info", "--nsd-root", str(sim_root), "--json"])
    info = json.loads(capsys.readouterr().out)
    names = [s["name"] for s in info["subjects"]]
    assert names == list(SUBJECTS)
    for s in info["subjects"]:
        assert s["n_trials"] == 120 and s["sessions"] == [1, 2]
        assert len(s["grid"]) == 3 and s["nsdgeneral_voxels"] > 100
        assert s["n_test_images"] == 10 and s["n_train_images"] == 30
    nsd_main(["info", "--nsd-root", str(sim_root)])
    assert "subj07" in capsys.readouterr().out


def test_session_cap_and_missing_sessions(sim_copy):
    capped = NSDDataset(sim_copy, max_session=1)
    assert capped.sessions("subj01") == [1]
    assert len(capped.trials("subj01")) == 60
    for path in (sim_copy / layout.betas_dir("subj01")).glob("betas_session02.*"):
        path.unlink()
    data = NSDDataset(sim_copy)
    assert data.sessions("subj01") == [1] and data.sessions("subj02") == [1, 2]
    table = data.trials("subj01")
    assert table.trial.max() == 59
    # repetition numbers still count presentations in the missing session
    assert table.repetition.max() <= 2
    with pytest.raises(Exception, match="session 2, which is not on disk"):
        data.read_trial("subj01", 70)


def test_nifti_session_is_decompressed_once(sim_root, monkeypatch):
    calls = []
    original = SessionFile.read_all

    def counting(self):
        calls.append(self.path)
        return original(self)

    monkeypatch.setattr(SessionFile, "read_all", counting)
    data = NSDDataset(sim_root, prefer="nifti")
    for trial in range(0, 60, 3):
        data.read_trial("subj01", trial)
    assert len(calls) == 1


def test_zscore_per_session(sim_root):
    data = NSDDataset(sim_root, zscore=True)
    brain = data.brainmask("subj01")
    values = data.read_session("subj01", 2)[:, brain]  # (trials, voxels in brain)
    np.testing.assert_allclose(values.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_allclose(values.std(axis=0), 1, atol=1e-3)


def test_compact_voxel_reads_match_volume_reads(sim_root):
    data = NSDDataset(sim_root)
    voxels = np.flatnonzero(data.nsdgeneral("subj02") > 0)
    full = data.read_trials("subj02", [3, 80])
    compact = data.read_trials("subj02", [3, 80], voxels=voxels)
    np.testing.assert_array_equal(compact, full.reshape(2, -1)[:, voxels])


def test_stimuli_captions_boxes(sim_root):
    data = NSDDataset(sim_root)
    nsd_id = int(data.trials("subj01").nsd_id[0])
    image = data.image(nsd_id)
    assert image.dtype == np.uint8 and image.shape == (128, 128, 3)
    assert image.std() > 10
    assert len(data.captions(nsd_id)) == 5
    assert all(box["name"] for box in data.boxes(nsd_id))
    np.testing.assert_array_equal(data.images([nsd_id, 0, nsd_id])[2], image)
