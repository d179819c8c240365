"""Train the demo's UnCLIP decoder (UNet, normaliser, schedulers) into its pipeline folder.

    python -m train.unclip                          # checkpoints/demo/unclip, after train/vision.py
    python -m train.unclip --steps 20 --pool-size 256 --out /tmp/unclip   # a quick smoke run

The folder must already hold the vision parts (vae/, image_encoder/, text_encoder/, tokenizer/,
feature_extractor/) written by `python -m train.vision`. The paper preset needs no training: it
loads stabilityai/stable-diffusion-2-1-unclip-small.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from neurochat.cli import run_main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.unclip", description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="pipeline folder (default: the demo preset's unclip folder)")
    parser.add_argument("--clip", help="CLIP folder (default: the demo preset's)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pool-size", type=int, default=12_000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--stop-at-step", type=int, help="stop after this step; the learning-rate schedule still spans --steps")
    parser.add_argument("--max-seconds", type=float, help="stop when this wall time is spent")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a tiny UNet (tests)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads (1 is fastest when another job shares the CPU)")
    args = parser.parse_args(argv)
    if args.stop_at_step is not None and not 1 <= args.stop_at_step <= args.steps:
        parser.error(f"--stop-at-step must be between 1 and --steps ({args.steps}), got {args.stop_at_step}")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from neurochat.models.unclip import DemoUNetConfig
    from neurochat.presets import get_preset
    from neurochat.training.unclip import DecoderTrainConfig, train_decoder

    preset = get_preset("demo")
    out = Path(args.out) if args.out else preset.unclip_dir
    clip = Path(args.clip) if args.clip else preset.clip_dir
    unet_config = DemoUNetConfig(block_out_channels=(8, 16), attention_heads=(2, 2), norm_num_groups=4) if args.tiny else DemoUNetConfig()
    config = DecoderTrainConfig(pool_size=args.pool_size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                seed=args.seed, stop_at_step=args.stop_at_step, max_seconds=args.max_seconds, warmup_steps=min(100, args.steps))  # fmt: skip
    result = train_decoder(out, clip, unet_config, config, image_size=preset.image_size, progress=not args.no_progress)
    (out / "decoder_training.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"decoder: {result['steps']} steps in {result['wall_seconds']} s, final loss {result['final_loss']:.4f} → {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
