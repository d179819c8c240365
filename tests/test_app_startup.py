"""The demo data is generated once into the cache, `python app.py` summarises it, and `--help` answers at once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import app
from neurochat import paths


def test_ensure_simnsd_generates_once_and_redoes_incomplete_trees(tmp_path, monkeypatch):
    monkeypatch.setenv("NEUROCHAT_CACHE", str(tmp_path))
    messages = []
    root = paths.ensure_simnsd("small", seed=0, log=messages.append)
    assert (root / "nsddata/experiments/nsd/nsd_expdesign.mat").exists() and len(messages) == 1
    assert paths.ensure_simnsd("small", seed=0, log=messages.append) == root and len(messages) == 1
    (root / ".complete").unlink()  # as if generation had been interrupted
    paths.ensure_simnsd("small", seed=0, log=messages.append)
    assert len(messages) == 2 and (root / ".complete").exists()


def test_app_prints_the_demo_summary(sim_root, monkeypatch, capsys):
    monkeypatch.setattr(app, "ensure_simnsd", lambda size, seed: sim_root)
    assert app.main(["--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [s["name"] for s in summary["subjects"]] == ["subj01", "subj02", "subj05", "subj07"]


def test_help_imports_no_heavy_library():
    """`python app.py --help` reads no model: gradio and torch are imported only to serve the page."""
    probe = ("import sys, app\n"
             "try:\n    app.main(['--help'])\nexcept SystemExit:\n    pass\n"
             "print(sorted(m for m in ('gradio', 'torch', 'nibabel', 'matplotlib') if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", probe], cwd=paths.REPO_ROOT, capture_output=True, text=True, check=True)
    assert "usage: python app.py" in done.stdout and done.stdout.strip().endswith("[]")


def test_the_models_use_one_torch_thread_on_a_cpu_unless_told():
    """Gradio's worker threads run the models: there one OpenMP thread is faster than two (startup.py)."""
    import torch

    from neurochat.app.startup import CPU_THREADS, set_model_threads
    from neurochat.errors import ConfigError

    before = torch.get_num_threads()
    try:
        assert set_model_threads("cpu") == CPU_THREADS == torch.get_num_threads()
        assert set_model_threads("cpu", 2) == 2
        with pytest.raises(ConfigError, match="--threads 0"):
            set_model_threads("cpu", 0)
    finally:
        torch.set_num_threads(before)
