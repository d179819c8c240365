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
from typing import Sequence

from neurochat.cli import add_verbosity_options, configure_logging, run_main, write_json
from neurochat.models.bundle import WeightsLayout
from neurochat.paths import CHECKPOINTS

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    # the step, batch and precision defaults are ClipConfig's and VaeConfig's, read after parsing:
    # importing neurochat.training.vision pulls torch, and --help should answer at once
    parser = argparse.ArgumentParser(prog="python -m train.vision", description=__doc__.splitlines()[0].split(": ", 1)[1])
    parser.add_argument("--out", default=str(CHECKPOINTS / "demo"), help="folder to write clip/, unclip/ and the manifest into")
    parser.add_argument("--seed", type=int, default=0, help="pool world and training seed (default: 0)")
    parser.add_argument("--pool-size", type=_positive_int, default=20_000, help="training pool pictures (default: 20000)")
    parser.add_argument("--eval-size", type=_positive_int, default=1000, help="held-out pool pictures for the quality numbers")
    parser.add_argument("--clip-steps", type=_positive_int, help="default: ClipConfig.steps (neurochat/training/vision/clip.py)")
    parser.add_argument("--vae-steps", type=_positive_int, help="default: VaeConfig.steps (neurochat/training/vision/vae.py)")
    parser.add_argument("--clip-batch-size", type=_positive_int, help="default: ClipConfig.batch_size")
    parser.add_argument("--vae-batch-size", type=_positive_int, help="default: VaeConfig.batch_size")
    parser.add_argument("--clip-max-seconds", type=float, default=None, help="stop CLIP training early after this long")
    parser.add_argument("--vae-max-seconds", type=float, default=None, help="stop VAE training early after this long")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="torch intra-op threads (default: torch's choice, one per core); use fewer when sharing the machine")
    parser.add_argument("--vae-mixed-precision", choices=("no", "bf16"),
                        help="default: VaeConfig.mixed_precision; bf16: the VAE's forward passes under bf16 autocast (faster on a CPU with native bf16: "
                             "`python -m neurochat.bench precision`; CLIP always trains in float32)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    add_verbosity_options(parser)
    parser.add_argument("--part", choices=("clip", "vae", "finish"),
                        help="train only CLIP or only the VAE, or (once both are trained) measure them and write the manifest; "
                             "default: all three in this process")  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging(args)

    import torch
    from accelerate import PartialState

    from neurochat.errors import ConfigError
    from neurochat.training.vision import ClipConfig, VaeConfig, finish_demo_vision, train_vision_part

    if args.threads:
        torch.set_num_threads(args.threads)
    clip_defaults, vae_defaults = ClipConfig(), VaeConfig()
    clip_steps = _given(args.clip_steps, clip_defaults.steps)
    vae_steps = _given(args.vae_steps, vae_defaults.steps)
    clip_config = dataclasses.replace(
        clip_defaults, steps=clip_steps, batch_size=_given(args.clip_batch_size, clip_defaults.batch_size),
        max_seconds=args.clip_max_seconds, warmup_steps=min(clip_defaults.warmup_steps, clip_steps),
    )
    vae_config = dataclasses.replace(
        vae_defaults, steps=vae_steps, batch_size=_given(args.vae_batch_size, vae_defaults.batch_size),
        max_seconds=args.vae_max_seconds, warmup_steps=min(vae_defaults.warmup_steps, vae_steps),
        mixed_precision=_given(args.vae_mixed_precision, vae_defaults.mixed_precision),
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
        manifest_path = WeightsLayout(args.out).vision_manifest
        write_json(manifest_path, manifest)
        print(f"wrote {manifest_path} ({manifest['total_bytes'] / 1e6:.1f} MB of weights and configs, "
              f"{manifest['total_wall_seconds'] / 60:.1f} min of training and measuring)")
    return 0


def _given(value, default):
    """The option's value, or the config's default where the option was not given."""
    return default if value is None else value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


if __name__ == "__main__":
    run_main(main)
