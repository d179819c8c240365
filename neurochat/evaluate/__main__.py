"""`python -m neurochat.evaluate <what> --preset demo [--json PATH]`: the paper's evaluations.

    extractor   CLIP identification and VAE correlation of ViT3D vs. its baselines (Sec. 3.2, 4.2)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from neurochat.cli import run_main, write_json


def _dataset_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=("demo", "paper"), default="demo")
    parser.add_argument("--weights", help="paper preset: weights root (see neurochat/presets.py)")
    parser.add_argument("--nsd-root", help="NSD tree (demo default: the cached SimNSD demo)")
    parser.add_argument("--max-session", type=int)
    parser.add_argument("--json", help="also write the numbers to this JSON file")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurochat.evaluate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="what", required=True)
    extractor = commands.add_parser("extractor", help="ViT3D vs. w/o ViT3D vs. w/o C_Subj on the test set")
    _dataset_options(extractor)
    extractor.add_argument("--patch-size", type=int, help="default: the preset's main size")
    args = parser.parse_args(argv)

    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.paths import ensure_simnsd
    from neurochat.presets import get_preset
    from neurochat.targets import dataset_targets

    preset = get_preset(args.preset, args.weights)
    root = Path(args.nsd_root) if args.nsd_root else ensure_simnsd("demo") if args.preset == "demo" else None
    if root is None:
        parser.error("the paper preset evaluates on real NSD: pass --nsd-root DIR")
    dataset = NSDDataset(root, max_session=args.max_session)
    targets = dataset_targets(dataset, VisionEncoders.from_preset(preset))

    if args.what == "extractor":
        from neurochat.evaluate.extractor import evaluate_extractors, extractor_folders, format_table

        patch_size = args.patch_size or preset.patch_sizes[0]
        results = evaluate_extractors(dataset, targets, extractor_folders(preset.extractor_dir, patch_size, dataset.subjects))
        print(format_table(results))
    if args.json:
        write_json(args.json, results)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    run_main(main)
