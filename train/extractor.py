"""Train an fMRI feature extractor (ViT3D or a paper baseline) on NSD or SimNSD.

    python -m train.extractor --preset demo                         # ViT3D, r = 7, all subjects
    python -m train.extractor --preset demo --patch-size 5          # a localization-ensemble member
    python -m train.extractor --preset demo --layout flattened      # "w/o ViT3D" (Sec. 4.2)
    python -m train.extractor --preset demo --subject subj01        # "w/o C_Subj": one subject's model
    accelerate launch -m train.extractor --preset paper --weights W --nsd-root /data/nsd --max-session 37

Writes a self-describing checkpoint (weights + config + preprocessing parameters) to --out, by
default the preset's folder for this layout, patch size and subject (`WeightsLayout.extractor_dir`
in neurochat/models/bundle.py). Interrupted runs resume from their last finished epoch.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from neurochat.cli import add_dataset_options, add_verbosity_options, configure_logging, run_main
from neurochat.models.bundle import WeightsLayout

log = logging.getLogger(__name__)


def default_output(weights: WeightsLayout, layout: str, patch_size: int, subjects: list[str] | None) -> Path:
    """Where a run writes without --out: one subject's run is that subject's "w/o C_Subj" model."""
    if subjects and len(subjects) == 1:
        return weights.extractor_dir("subject_specific", patch_size, subjects[0])
    return weights.extractor_dir(layout, patch_size)


def network_config(preset: str, layout: str, preprocessor, clip_dim: int, latent_shape, *, tiny: bool = False):
    """The extractor's shape: the preset's network (App. C for the paper, a small one for the demo, a tiny
    one for tests), its heads sized for the preset's CLIP embedding and VAE latent (for the paper, the
    decoder's own latents: 4×96×96 at 768 px)."""
    from neurochat.models.extractor import ExtractorConfig, demo_config, paper_config, token_count

    if tiny:
        return ExtractorConfig(layout=layout, patch_size=preprocessor.config.patch_size, n_tokens=token_count(preprocessor, layout),
                               hidden=24, layers=2, heads=2, head_hidden=32, clip_dim=clip_dim, latent_shape=latent_shape)  # fmt: skip
    if preset == "paper":
        return replace(paper_config(preprocessor, layout), clip_dim=clip_dim, latent_shape=tuple(latent_shape))
    return demo_config(preprocessor, clip_dim, latent_shape, layout)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.extractor", description=__doc__.splitlines()[0])
    add_dataset_options(parser)
    parser.add_argument("--patch-size", type=int, help="r (default: the preset's main size, 7 demo / 14 paper)")
    parser.add_argument("--layout", choices=("vit3d", "flattened"), default="vit3d")
    parser.add_argument("--subject", action="append", help="train on these subjects only (repeatable)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (smoke tests)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny", action="store_true", help="a tiny network (tests)")
    parser.add_argument("--out", help="checkpoint folder")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads (1 is fastest when another job shares the CPU)")
    parser.add_argument("--mixed-precision", choices=("no", "bf16"),
                        help="bf16: forward passes under bf16 autocast, float32 weights (faster on a CPU with native "
                             "bf16: `python -m neurochat.bench precision`). Default: bf16 for the paper preset on a "
                             "GPU, else no")  # fmt: skip
    add_verbosity_options(parser)
    args = parser.parse_args(argv)
    configure_logging(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    # heavy imports after argument parsing, so --help is instant
    from neurochat.data import TrialBank, build_preprocessor
    from neurochat.models.extractor import ExtractorBundle, FMRIExtractor, token_coordinates
    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.paths import dataset_root
    from neurochat.presets import get_preset
    from neurochat.targets import dataset_targets
    from neurochat.training.extractor import TrainConfig, train_extractor

    preset = get_preset(args.preset, args.weights)
    root = dataset_root(args.preset, args.nsd_root)
    dataset = NSDDataset(root, max_session=args.max_session)
    patch_size = args.patch_size or preset.patch_sizes[0]

    # 1. Preprocessing and compact voxel arrays; 2. targets from the preset's CLIP and VAE
    preprocessor = build_preprocessor(dataset, patch_size)
    bank = TrialBank(dataset, preprocessor, subjects=args.subject)
    import torch

    # the targets are made once per dataset and vision models (on the GPU if there is one; cached, resumable:
    # `python -m train.prepare` makes them ahead), at the decoder's resolution
    vision = VisionEncoders.from_preset(preset, device="cuda" if torch.cuda.is_available() else "cpu")
    targets = dataset_targets(dataset, vision, progress=not args.no_progress)

    # 3. The network, its initial weights drawn from --seed, so that the same command trains the same model
    torch.manual_seed(args.seed)
    config = network_config(args.preset, args.layout, preprocessor, vision.clip_dim, vision.latent_shape, tiny=args.tiny)
    model = FMRIExtractor(config, token_coordinates(preprocessor, args.layout))
    info = {"dataset": str(root), "max_session": args.max_session, "preset": args.preset,
            "vision": {"clip": str(vision.clip_dir), "unclip": str(vision.unclip_dir)}}  # fmt: skip
    bundle = ExtractorBundle(model, preprocessor, info)

    # 4. Train and save
    out = Path(args.out) if args.out else default_output(preset.layout, args.layout, patch_size, args.subject)
    n_parameters = sum(p.numel() for p in model.parameters())
    log.info(f"training {args.layout} r={patch_size} ({n_parameters / 1e6:.2f} M parameters, N={config.n_tokens}) "
             f"on {len(bank.subjects)} subject(s) → {out}")  # fmt: skip
    mixed_precision = args.mixed_precision or ("bf16" if args.preset == "paper" and torch.cuda.is_available() else "no")
    train_config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                               max_steps=args.max_steps, mixed_precision=mixed_precision)  # fmt: skip
    result = train_extractor(bundle, bank, targets, train_config, out, progress=not args.no_progress)
    last = result["history"][-1] if result["history"] else {}
    print(f"done: {result['steps']} steps in {result['train_seconds_this_run']} s; last epoch loss {last.get('loss', float('nan')):.4f}")
    return 0


if __name__ == "__main__":
    run_main(main)
