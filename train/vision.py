"""`python -m train.vision --out checkpoints/demo`: train the demo's tiny CLIP and VAE on SimNSD pool pictures.

Writes `OUT/clip/` (a transformers CLIPModel folder), the vision subfolders of `OUT/unclip/`
(vae, image_encoder, text_encoder, tokenizer, feature_extractor) and `OUT/vision_manifest.json`
(what built them, file hashes, quality on held-out pool pictures). Runs under `accelerate launch`
too. The training itself is `neurochat.training.vision`.

CLIP and VAE are independent, so they can train side by side, one process each:

    python -m train.vision --out DIR --part clip &  python -m train.vision --out DIR --part vae
    python -m train.vision --out DIR --part finish     # measure both, write the manifest

(what `train.demo_bundle --jobs 2` does); with no --part, one process does all three.
"""

from __future__ import annotations

import argparse
import logging
import dataclasses
import shlex
import sys
from pathlib import Path
from typing import Sequence

import torch

from neurochat.cli import add_verbosity_options, configure_logging, run_main, write_json
from neurochat.paths import CHECKPOINTS

log = logging.getLogger(__name__)

MANIFEST = "vision_manifest.json"


def main(argv: Sequence[str] | None = None) -> int:
    from accelerate import PartialState

    from neurochat.errors import ConfigError
    from neurochat.training.vision import ClipConfig, VaeConfig, finish_demo_vision, train_vision_part

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
    parser.add_argument("--vae-mixed-precision", choices=("no", "bf16"), default=vae_defaults.mixed_precision,
                        help="bf16: the VAE's forward passes under bf16 autocast (faster on a CPU with native bf16: "
                             "`python -m neurochat.bench precision`; CLIP always trains in float32)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    add_verbosity_options(parser)
    parser.add_argument("--part", choices=("clip", "vae", "finish"),
                        help="train only CLIP or only the VAE, or (once both are trained) measure them and write the manifest; "
                             "default: all three in this process")  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging(args)
    if args.threads:
        torch.set_num_threads(args.threads)

    clip_config = dataclasses.replace(
        clip_defaults, steps=args.clip_steps, batch_size=args.clip_batch_size, max_seconds=args.clip_max_seconds,
        warmup_steps=min(clip_defaults.warmup_steps, args.clip_steps),
    )
    vae_config = dataclasses.replace(
        vae_defaults, steps=args.vae_steps, batch_size=args.vae_batch_size, max_seconds=args.vae_max_seconds,
        warmup_steps=min(vae_defaults.warmup_steps, args.vae_steps), mixed_precision=args.vae_mixed_precision,
    )
    command = "python -m train.vision " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    if clip_config.image_size != vae_config.image_size:
        raise ConfigError(f"the CLIP and VAE image sizes differ ({clip_config.image_size} vs {vae_config.image_size})")
    for part in ("clip", "vae"):
        if args.part in (None, part):
            train_vision_part(args.out, part, clip_config=clip_config, vae_config=vae_config, seed=args.seed,
                              pool_size=args.pool_size, progress=not args.no_progress)  # fmt: skip
    if args.part in (None, "finish") and PartialState().is_main_process:  # one process writes the manifest
        manifest = finish_demo_vision(args.out, seed=args.seed, pool_size=args.pool_size, eval_size=args.eval_size,
                                      command=command)  # fmt: skip
        write_json(Path(args.out) / MANIFEST, manifest)
        print(f"wrote {Path(args.out) / MANIFEST} ({manifest['total_bytes'] / 1e6:.1f} MB of weights and configs, "
              f"{manifest['total_wall_seconds'] / 60:.1f} min of training and measuring)")
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


if __name__ == "__main__":
    run_main(main)
