"""Build an extractor at a preset's real size, print N and its parameter count, time forward+backward.

    python -m neurochat.bench extractor --preset paper      # 16 layers x 768 on NSD's geometry, r = 14

The paper geometry is subj01's grid with the four subjects' union mask; without NSD on disk a
synthetic stand-in mask of NSD's size is used (the one of `bench preprocess`). One random sample
goes forward and backward on the CPU (or --device), as a check that the published model fits.
"""

from __future__ import annotations

import argparse
import time

from neurochat.cli import add_nsd_root_option, add_preset_option, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_option(parser, default="paper")  # a randomly initialised model: no --weights
    add_nsd_root_option(parser)  # the paper preset without it: a synthetic union mask of NSD's size
    parser.add_argument("--patch-size", type=int, help="default: the preset's main size (14 paper, 7 demo)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def build(preset_name: str, nsd_root: str | None, patch_size: int | None):
    """(model, preprocessor) of the preset's extractor on its real geometry, randomly initialised."""
    from neurochat.bench.preprocess import synthetic_union_mask
    from neurochat.data import build_preprocessor
    from neurochat.models.extractor import FMRIExtractor, paper_config, token_coordinates
    from neurochat.nsd import NSDDataset
    from neurochat.paths import ensure_simnsd
    from neurochat.preprocess import PAPER_COMMON_GRID, PAPER_PATCH_SIZES, PatchPreprocessor, PreprocessConfig

    if preset_name == "paper":
        r = patch_size or PAPER_PATCH_SIZES[0]
        if nsd_root:
            preprocessor = build_preprocessor(NSDDataset(nsd_root), r)
        else:
            preprocessor = PatchPreprocessor(PreprocessConfig(PAPER_COMMON_GRID, r), synthetic_union_mask(PAPER_COMMON_GRID))
        config = paper_config(preprocessor)
    else:
        from neurochat.models.extractor import demo_config

        r = patch_size or 7
        preprocessor = build_preprocessor(NSDDataset(nsd_root or ensure_simnsd("demo")), r)
        config = demo_config(preprocessor, clip_dim=128, latent_shape=(4, 16, 16))
    return FMRIExtractor(config, token_coordinates(preprocessor, "vit3d")), preprocessor


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    model, preprocessor = build(args.preset, args.nsd_root, args.patch_size)
    model.to(args.device).train()
    config = model.config
    n_parameters = sum(p.numel() for p in model.parameters())
    print(f"{args.preset} extractor: {config.layers} layers x hidden {config.hidden}, r = {config.patch_size} on grid "
          f"{preprocessor.config.common_grid} (X, Y, Z) → N = {config.n_tokens} tokens of {config.token_dim}")  # fmt: skip
    print(f"parameters: {n_parameters:,} ({n_parameters / 1e6:.1f} M); heads to CLIP {config.clip_dim}-d and VAE {config.latent_shape}")
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(args.batch, config.n_tokens, config.token_dim, generator=generator).to(args.device)
    clip = torch.randn(args.batch, config.clip_dim, generator=generator).to(args.device)
    vae = torch.randn(args.batch, *config.latent_shape, generator=generator).to(args.device)
    from neurochat.models.extractor import alignment_loss

    started = time.perf_counter()
    output = model(tokens)
    loss, _, _ = alignment_loss(output, clip, vae, config.alpha)
    forward_s = time.perf_counter() - started
    loss.backward()
    total_s = time.perf_counter() - started
    grad_norm = float(torch.sqrt(sum((p.grad.float() ** 2).sum() for p in model.parameters() if p.grad is not None)))
    print(f"forward {forward_s:.3f} s, forward+backward {total_s:.3f} s on {args.device} (batch {args.batch}); "
          f"loss {loss.item():.3f}, gradient norm {grad_norm:.3f}")  # fmt: skip
    if args.json:
        write_json(args.json, {"preset": args.preset, "n_tokens": config.n_tokens, "parameters": n_parameters,
                               "forward_s": forward_s, "forward_backward_s": total_s,
                               "finite": bool(np.isfinite(loss.item()) and np.isfinite(grad_norm))})  # fmt: skip
    return 0
