"""Prepare training at NSD scale: the extractors' CLIP/VAE targets and the LLM's fMRI tokens, on the GPU.

    python -m train.prepare --preset paper --weights W --nsd-root /data/nsd --max-session 37   # both
    python -m train.prepare ... --only targets      # before train.extractor (every picture the subjects saw)
    python -m train.prepare ... --only tokens       # after the main ViT3D is trained, before train.llm

Targets: CLIP ViT-L/14 image embeddings and VAE latents at the decoder's 768 px of every picture shown
(`neurochat/targets.py`); fMRI tokens: the main extractor's penultimate hidden states of every
training trial and of every shared image averaged over its repetitions and as its first one
(`neurochat/training/fmri_tokens.py`). Both run in batches on the GPU when there is one, show a
progress bar with its rate and ETA, resume where an interrupted run stopped (run the same command
again), and land in the cache where `train.extractor` and `train.llm` look for them. The throughput of
each part is printed (and written with --json).
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Sequence

from neurochat.cli import add_dataset_options, add_verbosity_options, configure_logging, run_main, write_json

log = logging.getLogger(__name__)
PARTS = ("targets", "tokens")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.prepare", description=__doc__.splitlines()[0])
    add_dataset_options(parser)
    parser.add_argument("--only", choices=PARTS, help="make only the targets or only the fMRI tokens")
    parser.add_argument("--subject", action="append", help="these subjects only (repeatable; default: all on disk)")
    parser.add_argument("--device", help="default: cuda when available")
    parser.add_argument("--batch-size", type=int, default=64, help="pictures per step of the targets")
    parser.add_argument("--token-batch-size", type=int, default=32, help="recordings per extractor pass")
    parser.add_argument("--extractor", help="tokens: extractor checkpoint (default: the preset's main ViT3D)")
    parser.add_argument("--json", metavar="PATH", help="also write the throughput to this JSON file")
    parser.add_argument("--no-progress", action="store_true")
    add_verbosity_options(parser)
    args = parser.parse_args(argv)
    configure_logging(args)

    import torch

    from neurochat.nsd import NSDDataset
    from neurochat.paths import dataset_root
    from neurochat.presets import get_preset

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    preset = get_preset(args.preset, args.weights)
    dataset = NSDDataset(dataset_root(args.preset, args.nsd_root), max_session=args.max_session)
    report = {"preset": args.preset, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    if args.only in (None, "targets"):
        report["targets"] = _targets(args, preset, dataset, device)
    if args.only in (None, "tokens"):
        report["tokens"] = _tokens(args, preset, dataset, device)
    if args.json:
        write_json(args.json, report)
    return 0


def _targets(args, preset, dataset, device) -> dict:
    """CLIP and VAE targets of every picture the dataset's subjects saw (float32 models: they are the
    extractor's ground truth)."""
    import numpy as np

    from neurochat.models.vision import VisionEncoders
    from neurochat.targets import cached_targets, dataset_targets

    vision = VisionEncoders.from_preset(preset, device=device, batch_size=args.batch_size)
    what = f"{vision.image_size} px (CLIP {vision.clip_dim}, VAE {vision.latent_shape})"
    targets = cached_targets(dataset, vision)
    if targets is not None:
        print(f"targets: {len(targets.nsd_ids)} pictures at {what}, already made")
        return {"pictures": len(targets.nsd_ids), "image_size": vision.image_size, "cached": True}
    started = time.perf_counter()
    targets = dataset_targets(dataset, vision, batch_size=args.batch_size, progress=not args.no_progress)
    seconds = time.perf_counter() - started
    n = len(targets.nsd_ids)
    print(f"targets: {n} pictures at {what} in {seconds:.1f} s on {device}: {n / seconds:.1f} pictures/s")
    return {"pictures": n, "image_size": vision.image_size, "seconds": round(seconds, 2), "cached": False,
            "pictures_per_second": round(n / seconds, 2), "finite": bool(np.isfinite(targets.vae[:8]).all())}  # fmt: skip


def _tokens(args, preset, dataset, device) -> dict:
    """The main extractor's fMRI tokens of every recording an LLM stage may read."""
    from pathlib import Path

    from neurochat.data import TrialBank
    from neurochat.models.bundle import has_extractor, main_extractor_dir
    from neurochat.models.extractor import load_extractor
    from neurochat.training.fmri_tokens import extract_fmri, identify_extractor, recording_keys, token_cache_path

    folder = Path(args.extractor) if args.extractor else main_extractor_dir(preset)
    if not has_extractor(folder):
        print(f"tokens: skipped, no extractor at {folder} yet: train it (`python -m train.extractor --preset "
              f"{args.preset}`), then run this command again with --only tokens")  # fmt: skip
        return {"skipped": f"no extractor at {folder}"}
    bundle = load_extractor(folder, device=device)
    identify_extractor(bundle, folder)
    subjects = args.subject or list(dataset.subjects)
    bank = TrialBank(dataset, bundle.preprocessor, subjects=subjects)
    keys = recording_keys(dataset, subjects)
    path = token_cache_path(bundle, dataset.root)
    started = time.perf_counter()
    features = extract_fmri(bundle, bank, keys, path, progress=not args.no_progress, batch_size=args.token_batch_size)
    seconds = time.perf_counter() - started
    shape = tuple(features.array.shape[1:])
    print(f"tokens: {len(keys)} recordings of {len(subjects)} subject(s), {shape} each, in {seconds:.1f} s on {device}: "
          f"{len(keys) / seconds:.1f} recordings/s → {path}")  # fmt: skip
    return {"recordings": len(keys), "shape": list(shape), "seconds": round(seconds, 2),
            "recordings_per_second": round(len(keys) / seconds, 2), "cache": str(path)}  # fmt: skip


if __name__ == "__main__":
    run_main(main)
