"""`python -m neurochat.language build`: write the language extension of an NSD tree.

    python -m neurochat.language build --root NSD_ROOT --out DIR [--seed 0] [--annotations DIR]
        [--subjects subj01 ...] [--max-session N] [--tasks brief ...] [--source auto|simnsd|coco]

Writes DIR/train.json and DIR/test.json (LLaVA conversation samples pointing at fMRI trials),
DIR/references.json (ground-truth answers per test image, keyed by 73k id) and DIR/summary.json
(counts per task and split, skipped images). A SimNSD tree's scene graphs are used automatically;
otherwise COCO-format captions and instances JSON (ROOT/annotations, or --annotations).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Sequence

from neurochat.cli import run_main, write_json
from neurochat.language.extension import build_extension, build_references
from neurochat.language.facts import SOURCES
from neurochat.language.instructions import TASKS
from neurochat.nsd import NSDDataset


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurochat.language", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write train.json, test.json, references.json and summary.json")
    build.add_argument("--root", required=True, help="NSD root (or a SimNSD tree)")
    build.add_argument("--out", required=True, help="folder to write the JSON files into")
    build.add_argument("--seed", type=int, default=0, help="seeds instruction and wording choices")
    build.add_argument("--annotations", default=None, help="folder of COCO-format captions_*.json / instances_*.json")
    build.add_argument("--subjects", nargs="+", default=None, help="default: every subject on disk")
    build.add_argument("--max-session", type=int, default=None, help="ignore later sessions (37: classic split)")
    build.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="which kinds of samples")
    build.add_argument("--source", choices=SOURCES, default="auto", help="facts from SimNSD scene graphs or COCO annotations")
    build.add_argument("--image-size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"), default=None,
                       help="pixels the COCO boxes are measured in (default: the stimuli's size)")  # fmt: skip
    args = parser.parse_args(argv)

    started = time.perf_counter()
    dataset = NSDDataset(args.root, max_session=args.max_session, annotations=args.annotations)
    image_size = tuple(args.image_size) if args.image_size else None
    train, test, summary = build_extension(
        dataset, seed=args.seed, subjects=args.subjects, tasks=args.tasks, source=args.source, image_size=image_size
    )
    references = build_references(dataset, subjects=args.subjects, source=args.source, image_size=image_size)
    summary["seconds"] = round(time.perf_counter() - started, 1)
    out = Path(args.out)
    write_json(out / "train.json", train)
    write_json(out / "test.json", test)
    write_json(out / "references.json", {str(nsd_id): answers for nsd_id, answers in references.items()})
    write_json(out / "summary.json", summary)

    counts = summary["samples"]
    print(f"language extension of {args.root} ({summary['source']} facts, seed {args.seed}) in {summary['seconds']} s")
    for split in ("train", "test"):
        per_task = ", ".join(f"{task} {n}" for task, n in counts[split].items() if task != "total")
        print(f"{split}: {counts[split]['total']} samples, {summary['images'][split]} images ({per_task})")
    if summary["dialogue_turns"]["train"]:
        print("dialogue turns (train): " + ", ".join(f"{kind} {n}" for kind, n in summary["dialogue_turns"]["train"].items()))
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {out}/train.json, test.json, references.json, summary.json")
    return 0


if __name__ == "__main__":
    run_main(main)
