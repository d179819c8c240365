"""Train the demo's UnCLIP decoder (UNet, normaliser, schedulers) into its pipeline folder.

    python -m train.unclip                          # checkpoints/demo/unclip, after train/vision.py
    python -m train.unclip --steps 20 --pool-size 256 --out /tmp/unclip   # a quick smoke run

Training is resumable: the state is saved every --checkpoint-every steps, and the same command run
again continues where a cut-off (or --max-seconds) run stopped; the pipeline folder always holds the
latest saved weights, so a partly trained decoder can be evaluated while training goes on.

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
    parser.add_argument("--steps", type=int, default=30_000, help="train until this step (a resumed run may raise it)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pool-size", type=int, default=20_000)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--checkpoint-every", type=int, default=500, help="steps between saved states")
    parser.add_argument("--max-seconds", type=float, help="stop (resumably) when this wall time is spent")
    parser.add_argument("--fresh", action="store_true", help="discard a saved state and start over")
    parser.add_argument("--warm-start", action="store_true",
                        help="with no saved state, continue from the folder's UNet (fresh optimizer)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a tiny UNet (tests)")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads (1 is fastest when another job shares the CPU)")
    args = parser.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    from neurochat.models.unclip import DemoUNetConfig
    from neurochat.presets import get_preset
    from neurochat.training.unclip import DecoderTrainConfig, train_decoder

    preset = get_preset("demo")
    out = Path(args.out) if args.out else preset.unclip_dir
    clip = Path(args.clip) if args.clip else preset.clip_dir
    tiny = DemoUNetConfig(block_out_channels=(8, 16), cross_attention=(False, True), attention_heads=(2, 2), norm_num_groups=4)
    unet_config = tiny if args.tiny else DemoUNetConfig()
    config = DecoderTrainConfig(pool_size=args.pool_size, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                checkpoint_every=args.checkpoint_every, seed=args.seed, max_seconds=args.max_seconds,
                                warmup_steps=min(200, args.steps))  # fmt: skip
    result = train_decoder(out, clip, unet_config, config, image_size=preset.image_size, progress=not args.no_progress,
                           fresh=args.fresh, warm_start=args.warm_start)  # fmt: skip
    (out / "decoder_training.json").write_text(json.dumps(result, indent=2) + "\n")
    state = "finished" if result["finished"] else "stopped (run the same command again to continue)"
    print(f"decoder: step {result['steps']} of {args.steps}, {state}, {result['train_seconds']} s, "
          f"final loss {result['final_loss']:.4f} → {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
