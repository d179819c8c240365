"""Where NeuroChat keeps generated data and run-time caches, and the built-in demo data.

The cache folder is `$NEUROCHAT_CACHE`, or `.cache/` in the repository (git ignores it). The demo
dataset is generated there on first use, so a fresh clone runs with no download.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable

REPO_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = REPO_ROOT / "checkpoints"
_COMPLETE_MARKER = ".complete"  # written last, so an interrupted generation is never taken as done


def cache_dir() -> Path:
    return Path(os.environ.get("NEUROCHAT_CACHE", REPO_ROOT / ".cache"))


def simnsd_root(size: str = "demo", seed: int = 0, subject: str | None = None) -> Path:
    """Where the SimNSD tree of this size and seed lives in the cache (`subject`: a tree of that new subject alone)."""
    return cache_dir() / (f"simnsd-{size}-seed{seed}" + (f"-{subject}" if subject else ""))


def ensure_simnsd(size: str = "demo", seed: int = 0, log: Callable[[str], None] | None = None,
                  subject: str | None = None) -> Path:  # fmt: skip
    """The cached SimNSD tree of this size and seed, generated first if it is missing or incomplete.

    `subject`: a new subject of the same world (`neurochat.sim.config.NEW_SUBJECTS`), in a tree of its own
    beside the trained subjects (whose files there are the same as in the tree without it).
    Its one message (that it is generating, once) goes to `log` if given, else to the logger.
    """
    from neurochat.sim.config import SUBJECTS
    from neurochat.sim.generate import SIMNSD_VERSION, generate

    root = simnsd_root(size, seed, subject)
    marker = root / _COMPLETE_MARKER
    say = log or logging.getLogger(__name__).info
    if marker.exists() and json.loads(marker.read_text()).get("simnsd_version") == SIMNSD_VERSION:
        first = subject or SUBJECTS[0]
        rois = [root / f"nsddata/ppdata/{first}/func1pt8mm/roi/{name}.nii.gz" for name in ("floc-places", "prf-visualrois")]
        if not all(path.exists() for path in rois):
            from neurochat.floc import write_sim_floc_rois

            say(f"adding the functional-localizer ROIs to {root} (a tree generated before SimNSD wrote them)")
            write_sim_floc_rois(root)
        return root
    if root.exists():
        shutil.rmtree(root)  # an interrupted or outdated generation
    say(f"generating the SimNSD {size} dataset (seed {seed}{', new subject ' + subject if subject else ''}) into {root} "
        "— once, about a minute ...")
    generate(root, size=size, seed=seed, subjects=[*SUBJECTS, subject] if subject else SUBJECTS)
    marker.write_text(json.dumps({"simnsd_version": SIMNSD_VERSION, "size": size, "seed": seed}))
    return root


def adapted_demo_tree(adapted: dict[str, Path], log: Callable[[str], None] | None = None) -> Path | None:
    """The cached SimNSD tree of a new subject that has an adapted model (`train.adapt` made both), or None.

    The demo explores that tree (the trained subjects and the new one) instead of the plain one; with
    several new subjects adapted, the first one's (each lives in a tree of its own)."""
    from neurochat.sim.config import NEW_SUBJECTS

    ready = [s for s in adapted if s in NEW_SUBJECTS and (simnsd_root("demo", 0, s) / _COMPLETE_MARKER).exists()]
    if len(ready) > 1 and log is not None:
        log(f"several new subjects are adapted; exploring {ready[0]}'s tree (pass --nsd-root for another)")
    return ensure_simnsd("demo", log=log, subject=ready[0]) if ready else None


def dataset_root(preset: str, nsd_root: str | Path | None) -> Path:
    """The NSD tree a command works on: `nsd_root`, or for the demo the cached SimNSD (generated once)."""
    from neurochat.errors import ConfigError

    if nsd_root:
        check_simnsd_version(nsd_root)
        return Path(nsd_root)
    if preset == "demo":
        return ensure_simnsd("demo")
    raise ConfigError(f"the {preset} preset works on real NSD: pass --nsd-root DIR (the folder holding nsddata/)")


def simnsd_version(root: str | Path) -> int | None:
    """The SimNSD version that wrote the tree at `root` (None: not a SimNSD tree, e.g. real NSD)."""
    meta = Path(root) / "simnsd" / "simnsd.json"
    return int(json.loads(meta.read_text()).get("simnsd_version", 1)) if meta.exists() else None


def check_simnsd_version(root: str | Path, trained_on: int | None = None) -> None:
    """Refuse a SimNSD tree written by another version of the simulator than this code (or than the
    models in use were trained on, `trained_on`): its brains respond by other rules."""
    from neurochat.errors import DataError
    from neurochat.sim.generate import SIMNSD_VERSION

    found = simnsd_version(root)
    if found is None:
        return
    wanted = SIMNSD_VERSION if trained_on is None else trained_on
    if found != wanted:
        size = json.loads((Path(root) / "simnsd" / "simnsd.json").read_text()).get("size", "demo")
        regenerate = f"regenerate it with `python -m neurochat.sim --out {root} --size {size} --seed 0`"
        rebuild = "rebuild the models with `python -m train.demo_bundle`"
        if trained_on is None:
            advice = f"this NeuroChat simulates version {wanted}: {regenerate}"
        elif trained_on == SIMNSD_VERSION:
            advice = f"these models were trained on version {wanted}: {regenerate}, or {rebuild}"
        else:  # this code writes neither: a tree it generates would not match the models either
            advice = (f"these models were trained on version {wanted} and this NeuroChat simulates version "
                      f"{SIMNSD_VERSION}: {rebuild} (or use the NeuroChat and bundle of the same commit)")
        raise DataError(f"the SimNSD tree at {root} was written by SimNSD version {found}, but {advice}")


def bundle_simnsd_version(weights_root: str | Path) -> int | None:
    """The SimNSD version a demo bundle's models were trained on, from its manifest (None: not recorded)."""
    from neurochat.models.bundle import WeightsLayout

    manifest = WeightsLayout(Path(weights_root)).manifest
    return json.loads(manifest.read_text()).get("simnsd_version") if manifest.exists() else None
