"""Shared fixtures: offline settings and one small SimNSD tree per test session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

# Nothing may reach the network: models and data load from local folders only.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def sim_root(tmp_path_factory) -> Path:
    """A small SimNSD tree (seed 0), generated once per test session. Treat it as read-only."""
    from neurochat.sim.generate import generate

    return generate(tmp_path_factory.mktemp("simnsd") / "small", size="small", seed=0)


@pytest.fixture
def sim_copy(sim_root, tmp_path) -> Path:
    """A private copy of the small SimNSD tree that a test may damage."""
    import shutil

    return Path(shutil.copytree(sim_root, tmp_path / "nsd"))


@pytest.fixture(scope="session")
def micro_bundle(sim_root, tmp_path_factory) -> Path:
    """The whole demo chain at micro size (tiny models, a few steps each) on the small tree, built once.

    Every file of a demo bundle is there, so the explorer, the app and the notebook load it exactly
    like the committed demo; the answers are nonsense, the plumbing is real.
    """
    from train.demo_bundle import main as bundle_main

    out = tmp_path_factory.mktemp("bundle") / "micro"
    # two stages at a time, each in its own process, as the full rebuild runs
    assert bundle_main(["--out", str(out), "--size", "micro", "--nsd-root", str(sim_root), "--jobs", "2"]) == 0
    return out
