"""`python -m neurochat.sim --out DIR --size {small,demo} --seed N [--subjects subj03]`: write a SimNSD tree."""

from __future__ import annotations

import argparse
import time
from typing import Sequence

from neurochat.cli import run_main
from neurochat.sim.config import NEW_SUBJECTS, SIZES, SUBJECTS
from neurochat.sim.generate import generate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m neurochat.sim",
        description="Write SimNSD, a phantom of the Natural Scenes Dataset in NSD's exact file layout, "
        "with its ground-truth answer key under simnsd/.",
    )
    # --out, not --nsd-root: this command writes a tree; the commands that read one take --nsd-root
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="folder to write the NSD tree into (read it elsewhere with --nsd-root DIR)")
    parser.add_argument("--size", choices=sorted(SIZES), default="demo", help="small (tests) or demo")
    parser.add_argument("--seed", type=int, default=0, help="same seed and size give identical files")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: one per core, at most 4)")
    parser.add_argument("--subjects", default=",".join(SUBJECTS), help=f"whom to simulate, comma-separated (default: the "
                        f"trained {', '.join(SUBJECTS)}); new subjects of the same world: {', '.join(NEW_SUBJECTS)}")  # fmt: skip
    args = parser.parse_args(argv)
    started = time.perf_counter()
    subjects = [name.strip() for name in args.subjects.split(",") if name.strip()]
    out = generate(args.out, size=args.size, seed=args.seed, workers=args.workers, subjects=subjects)
    print(f"wrote SimNSD ({args.size}, seed {args.seed}) to {out} in {time.perf_counter() - started:.1f} s")
    print(f"summary: python -m neurochat.nsd info --nsd-root {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
