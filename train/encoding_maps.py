"""Fit the encoding-model statistics of the demo's SimNSD subjects into the bundle, so that the first
concept map of a subject in the app takes a moment instead of half a minute of fitting.

    python -m train.encoding_maps --weights checkpoints/demo [--nsd-root DIR]

The statistics belong to the exact weights the app reads, so this runs on the packed bundle (the
demo bundle's build does it after `pack`) and on the same SimNSD version, size and seed the app
generates (neurochat/encoding.py says how they are keyed). Earlier files in the folder are removed:
after a retrain they could never be read again.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Sequence

from neurochat.cli import add_nsd_root_option, run_main


def write_encoding_maps(weights: str | Path, nsd_root: str | Path | None = None) -> dict:
    """Write every subject's statistics into `weights`/encoding_maps; returns what was written."""
    from neurochat.explorer import Explorer

    started = time.perf_counter()
    explorer = Explorer.load("demo", nsd_root=nsd_root, weights=weights, device="cpu", log=lambda *_: None)
    folder = explorer.preset.layout.encoding_maps_dir
    for stale in folder.glob("*.npz"):
        stale.unlink()
    # only the voxels where the app searches concepts (nsdgeneral): less than half of what the extractors read
    written = [path for subject in explorer.subjects
               for path in explorer.localizer.ship(folder, subject, keep=explorer.dataset.nsdgeneral(subject) > 0)]  # fmt: skip
    return {"files": len(written), "bytes": sum(path.stat().st_size for path in written),
            "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.encoding_maps", description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="the demo bundle's folder (e.g. checkpoints/demo)")
    add_nsd_root_option(parser)
    args = parser.parse_args(argv)
    done = write_encoding_maps(args.weights, args.nsd_root)
    print(f"encoding maps: {done['files']} files, {done['bytes'] / 1e6:.1f} MB, {done['seconds']} s")
    return 0


if __name__ == "__main__":
    run_main(main)
