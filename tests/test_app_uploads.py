"""The explorer with uploaded volumes (a subject the models never saw), on the micro bundle of `test_app.py`:
refusals of volumes without brain activity, 4D files, the file's own grid and units, and the bound on
how many uploads a long-running server holds.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from test_app import ask, explorer, micro_bundle, session, ui, value, warning  # noqa: F401 — fixtures and helpers

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::UserWarning")]  # gr.Warning outside a server


def _save(tmp_path, name, data, affine=None):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)
    return str(path)


def test_uploads_without_brain_activity_are_refused(ui, explorer, session, tmp_path):
    shape = explorer.dataset.native_shape("subj01")
    zeros = _save(tmp_path, "zeros.nii.gz", np.zeros(shape, np.float32))
    assert "zeros.nii.gz holds the same value (0) in all" in warning(ui, ui.upload(zeros, 0, session))
    constant = _save(tmp_path, "mask.nii.gz", np.ones((*shape, 3), np.int16))
    assert "holds the same value" in warning(ui, ui.upload(constant, 1, session))
    holes = np.ones(shape, np.float32)
    holes[0, 0, :3] = np.nan
    assert "NaN" in warning(ui, ui.upload(_save(tmp_path, "holes.nii", holes), 0, session))
    text = tmp_path / "notes.txt"
    text.write_text("not a brain")
    assert "not a readable NIfTI" in warning(ui, ui.upload(str(text), 0, session))
    assert session.trial.upload is None  # the tab still explores its trial


def test_a_4d_upload_reads_the_picked_volume(ui, explorer, session, tmp_path):
    shape = explorer.dataset.native_shape("subj01")
    volumes = np.random.default_rng(0).normal(size=(*shape, 3)).astype(np.float32)
    run = _save(tmp_path, "run.nii.gz", volumes)
    out = ui.upload(run, 0, session)
    assert out[ui.c.state].trial.upload.startswith("run.nii.gz[0]") and "Volume 0 of the file's 3" in out[ui.c.caption]
    assert value(out[ui.c.subject]) is None and value(out[ui.c.trial]) is None  # no dataset trial is shown now
    assert np.allclose(explorer.features(session.trial).volume, volumes[..., 0])
    picked = ui.pick_volume(2, session)
    assert session.trial.upload.startswith("run.nii.gz[2]") and "Volume 2" in picked[ui.c.caption]
    assert np.allclose(explorer.features(session.trial).volume, volumes[..., 2])
    assert "from 0 to 2, not 3" in warning(ui, ui.pick_volume(3, session))
    assert session.trial.upload.startswith("run.nii.gz[2]")  # the refused pick changed nothing


def test_an_uploaded_3d_volume_is_explored_on_its_own_grid(ui, explorer, session, tmp_path):
    volume = explorer.dataset.read_trials("subj01", explorer.dataset.trials("subj01").trials_of_image(2)[:1])[0]
    affine = explorer.dataset.affine("subj01")
    mine = _save(tmp_path, "mine.nii.gz", volume.astype(np.float32), affine)
    out = ui.upload(mine, 2, session)  # the volume number picks among a 4D file's volumes; a 3D file has one
    assert out[ui.c.state].trial.upload and out[ui.c.stimulus] is None and "uploaded" in out[ui.c.caption]
    assert np.allclose(explorer.features(out[ui.c.state].trial).affine, affine)  # the file's own grid, kept
    reply, _ = ask(ui, out[ui.c.state], "Describe the image concisely.")
    assert reply[ui.c.chatbot][-1]["content"].strip()


def test_the_explorer_holds_a_bounded_number_of_uploads_and_one_map_per_subject(explorer, tmp_path, monkeypatch):
    """A server runs for days: old uploads are dropped (a clear error if one is asked for again), and a
    subject's encoding map, the same for every trial, is held once."""
    from neurochat.errors import DataError
    from neurochat.lru import LRUCache

    monkeypatch.setattr(explorer, "_uploads", LRUCache(2))
    shape = explorer.dataset.native_shape("subj01")
    noise = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    states = [explorer.upload(_save(tmp_path, f"upload{i}.nii.gz", noise + i)) for i in range(3)]
    assert len({state.upload for state in states}) == 3  # each its own key, also after older ones are dropped
    explorer._features.clear()
    explorer.features(states[2])
    with pytest.raises(DataError, match="upload0.nii.gz#.* is no longer held .* upload the file again"):
        explorer.features(states[0])

    first, second = (explorer.select("subj01", choice.nsd_id) for choice in explorer.trial_choices("subj01")[:2])
    assert explorer.localize(first, "dog") is explorer.localize(second, "dog")  # one subject, one map


def test_an_uploaded_volume_is_read_in_nsd_units_with_its_affine(tmp_path):
    from neurochat.nsd import BETA_SCALE, read_beta_map

    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    stored = np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1)  # one trial saved as 4-D, NSD's int16 units
    volume, read_affine = read_beta_map(_save(tmp_path, "nsd.nii.gz", stored, affine))
    assert volume.shape == (2, 3, 4) and volume.dtype == np.float32
    assert np.allclose(volume, stored[..., 0] / BETA_SCALE) and np.allclose(read_affine, affine)
    floats, _ = read_beta_map(_save(tmp_path, "psc.nii.gz", stored[..., 0].astype(np.float32)))
    assert np.allclose(floats, stored[..., 0])  # floats are percent signal change already
