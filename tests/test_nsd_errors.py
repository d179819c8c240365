"""Bad input gets a clear message that names the path, the shape or the value and what to do."""

from __future__ import annotations


import nibabel as nib
import numpy as np
import pytest

from neurochat.errors import DataError
from neurochat.nsd import NSDDataset, layout
from neurochat.nsd.__main__ import main as nsd_main
from neurochat.cli import run_main


def test_missing_design_file(sim_copy):
    (sim_copy / layout.EXPDESIGN).unlink()
    with pytest.raises(DataError, match=r"missing .*nsd_expdesign\.mat"):
        NSDDataset(sim_copy).trials("subj01")


def test_missing_root_and_missing_mask(sim_copy, tmp_path):
    with pytest.raises(DataError, match="is not a folder"):
        NSDDataset(tmp_path / "nowhere")
    (sim_copy / layout.nsdgeneral("subj02")).unlink()
    with pytest.raises(DataError, match=r"missing .*roi/nsdgeneral\.nii\.gz"):
        NSDDataset(sim_copy).nsdgeneral("subj02")


def test_truncated_nifti(sim_copy):
    path = sim_copy / layout.betas_file("subj01", 1, "nifti")
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    data = NSDDataset(sim_copy, prefer="nifti")
    with pytest.raises(DataError, match=r"betas_session01\.nii\.gz is damaged or truncated.*download it again"):
        data.read_trial("subj01", 3)


def test_volume_of_the_wrong_shape(sim_copy):
    for path in (sim_copy / layout.betas_dir("subj01")).glob("betas_session01.*"):
        path.unlink()
    wrong = np.zeros((10, 11, 12, 60), np.int16)
    nib.save(nib.Nifti1Image(wrong, np.eye(4)), sim_copy / layout.betas_file("subj01", 1, "nifti"))
    expected = NSDDataset(sim_copy).native_shape("subj01")
    with pytest.raises(DataError, match=rf"shape \(10, 11, 12\).*masks .* are \({', '.join(map(str, expected))}\)"):
        NSDDataset(sim_copy).read_trial("subj01", 0)


def test_nan_betas(sim_copy):
    for path in (sim_copy / layout.betas_dir("subj02")).glob("betas_session01.*"):
        path.unlink()
    shape = NSDDataset(sim_copy).native_shape("subj02")
    values = np.zeros((*shape, 60), np.float32)
    values[3, 4, 5, 9] = np.nan
    nib.save(nib.Nifti1Image(values, np.eye(4)), sim_copy / layout.betas_file("subj02", 1, "nifti"))
    data = NSDDataset(sim_copy)
    with pytest.raises(DataError, match=r"trial 9 has 1 NaN or infinite betas"):
        data.read_trials("subj02", [8, 9])
    assert np.isfinite(data.read_trial("subj02", 8)).all()


def test_unknown_subject(sim_root):
    with pytest.raises(DataError, match=r"unknown subject 'subj03'.*subj01, subj02, subj05, subj07"):
        NSDDataset(sim_root).trials("subj03")


def test_trial_index_out_of_range(sim_root):
    data = NSDDataset(sim_root)
    with pytest.raises(DataError, match=r"trial 120 is out of range for subj01: trials are numbered 0\.\.119"):
        data.read_trial("subj01", 120)
    with pytest.raises(DataError, match=r"trial -1 is out of range"):
        data.read_trial("subj01", -1)


def test_cli_prints_the_message_without_traceback(sim_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(nsd_main, ["trial", "--nsd-root", str(sim_root), "--subject", "subj01", "--index", "999"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: trial 999 is out of range") and "Traceback" not in err
