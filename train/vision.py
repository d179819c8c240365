"""`python -m train.vision --out checkpoints/demo`: train the demo's tiny CLIP and VAE on SimNSD pool pictures.

Writes `OUT/clip/` (a transformers CLIPModel folder), the vision subfolders of `OUT/unclip/`
(vae, image_encoder, text_encoder, tokenizer, feature_extractor) and `OUT/vision_manifest.json`
(what built them, file hashes, quality on held-out pool pictures). The defaults take about half an
hour on 2 CPU cores. Runs under `accelerate launch` too. The training itself is
`neurochat.training.vision`.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Sequence

import torch

from neurochat.cli import run_main, write_json
from neurochat.paths import CHECKPOINTS

MANIFEST = "vision_manifest.json"


def main(argv: Sequence[str] | None = None) -> int:
    from neurochat.training.vision import ClipConfig, VaeConfig, build_demo_vision

    clip_defaults, vae_defaults = ClipConfig(), VaeConfig()
    parser = argparse.ArgumentParser(prog="python -m train.vision", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--out", default=str(CHECKPOINTS / "demo"), help="folder to write clip/, unclip/ and the manifest into")
    parser.add_argument("--seed", type=int, default=0, help="pool world and training seed (default: 0)")
    parser.add_argument("--pool-size", type=_positive_int, default=20_000, help="training pool pictures (default: 20000)")
    parser.add_argument("--eval-size", type=_positive_int, default=1000, help="held-out pool pictures for the quality numbers")
    parser.add_argument("--clip-steps", type=_positive_int, default=clip_defaults.steps)
    parser.add_argument("--vae-steps", type=_positive_int, default=vae_defaults.steps)
    parser.add_argument("--clip-batch-size", type=_positive_int, default=clip_defaults.batch_size)
    parser.add_argument("--vae-batch-size", type=_positive_int, default=vae_defaults.batch_size)
    parser.add_argument("--clip-max-seconds", type=float, default=None, help="stop CLIP training early after this long")
    parser.add_argument("--vae-max-seconds", type=float, default=None, help="stop VAE training early after this long")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core); use fewer when sharing the machine")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    clip_config = dataclasses.replace(
        clip_defaults, steps=args.clip_steps, batch_size=args.clip_batch_size, max_seconds=args.clip_max_seconds,
        warmup_steps=min(clip_defaults.warmup_steps, args.clip_steps),
    )
    vae_config = dataclasses.replace(
        vae_defaults, steps=args.vae_steps, batch_size=args.vae_batch_size, max_seconds=args.vae_max_seconds,
        warmup_steps=min(vae_defaults.warmup_steps, args.vae_steps),
    )
    command = "python -m train.vision " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    manifest = build_demo_vision(
        args.out,
        clip_config=clip_config,
        vae_config=vae_config,
        seed=args.seed,
        pool_size=args.pool_size,
        eval_size=args.eval_size,
        command=command,
        progress=not args.no_progress,
    )
    if manifest:  # only the main process returns one
        write_json(Path(args.out) / MANIFEST, manifest)
        print(f"wrote {Path(args.out) / MANIFEST} ({manifest['total_bytes'] / 1e6:.1f} MB of weights and configs, "
              f"{manifest['total_wall_seconds'] / 60:.1f} min)")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


if __name__ == "__main__":
    run_main(main)
