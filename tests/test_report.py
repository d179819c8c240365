"""The evaluation report: one section measured again keeps the rest and names its own command."""

from __future__ import annotations

import json

import pytest

from neurochat.errors import DataError
from neurochat.evaluate.report import remeasure_section, write_report


def _localize(ensemble: float) -> dict:
    auc = {"method": "encoding", "ensemble": ensemble, "single": {"7": ensemble}, "random": 0.5, "n": 3,
           "gradcam": {"ensemble": 0.55, "single": {"7": 0.55}}}  # fmt: skip
    return {"auc": auc, "ablation": {"removed_below_others": 0.5, "drop_removed": 0.02, "drop_others": 0.01, "n": 2,
                                     "method": "encoding", "fraction": 0.1, "beta": 0.93,
                                     "embedding": {"removed_below_others": 0.75, "drop_removed": 0.1, "drop_others": 0.02}}}  # fmt: skip


def test_a_remeasured_section_replaces_only_itself_and_is_named_in_the_header(tmp_path):
    results = {"localize": _localize(0.6), "caption": None}
    write_report(results, tmp_path, preset="demo", dataset="/data/sim", seconds=600, command="python -m neurochat.evaluate all --out X")
    remeasure_section(tmp_path, "localize", _localize(0.9), command="python -m neurochat.evaluate localize --report X", seconds=120)
    report = (tmp_path / "REPORT.md").read_text()
    assert "Produced by `python -m neurochat.evaluate all --out X` in 10.0 min" in report
    assert "localization and ablation section was measured again" in report and "--report X` (2.0 min)" in report
    assert "| ensemble | 0.900 | 0.550 |" in report and "0.600" not in report
    assert "top 10% of voxels, β = 0.93" in report and "ẑ_c, the removed concept fell below the others in 75.0%" in report
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["localize"]["auc"]["ensemble"] == 0.9 and "caption" in saved


def test_remeasuring_without_a_report_says_how_to_write_one(tmp_path):
    with pytest.raises(DataError, match="evaluate all --out"):
        remeasure_section(tmp_path, "localize", _localize(0.9), command="c", seconds=1)


def test_the_reconstruction_table_says_whether_its_numbers_are_one_seed_or_a_mean_over_seeds(tmp_path):
    row = {"pixcorr": 0.65, "ssim": 0.64, "clip_2way": 0.92, **{k: None for k in ("alexnet2", "alexnet5", "inception", "effnet", "swav")}}
    write_report({"recon": {"no_llm": {"averaged": row}}}, tmp_path, preset="demo", dataset="/data/sim", seconds=60)
    assert "One diffusion seed per reconstruction" in (tmp_path / "REPORT.md").read_text()
    spread = {"pixcorr": 0.021, "ssim": 0.01, "clip_2way": 0.03}
    write_report({"recon": {"no_llm": {"averaged": {**row, "seed_sd": spread}}}}, tmp_path, preset="demo", dataset="/data/sim",
                 seconds=60)  # fmt: skip
    report = (tmp_path / "REPORT.md").read_text()
    assert "| no_llm | averaged | 0.650 | 0.640 | 92.0% |" in report
    assert "mean over several diffusion seeds; across the seeds PixCorr spread by 0.021–0.021 (standard deviation, per row) " \
           "and CLIP two-way by 3.0%–3.0%." in report


def test_a_report_rewritten_from_results_json_keeps_the_papers_row_order(tmp_path):
    row = {"pixcorr": 0.5, "ssim": 0.5, "clip_2way": 0.9, "alexnet2": None, "alexnet5": None, "inception": None,
           "effnet": None, "swav": None}  # fmt: skip
    recon = {name: {"single": row, "averaged": row} for name in ("flattened", "no_llm", "no_vae", "ours")}  # sorted, as stored
    text = write_report({"recon": recon}, tmp_path, preset="demo", dataset="/data/sim", seconds=60).read_text()
    rows = [line.split(" | ")[:2] for line in text.splitlines() if line.split(" | ")[0][2:] in recon]
    assert rows == [[f"| {name}", protocol] for name in ("ours", "no_llm", "no_vae", "flattened")
                    for protocol in ("averaged", "single")]  # fmt: skip
