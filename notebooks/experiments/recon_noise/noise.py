"""Experiment (issue 8): how far a bundle's reconstruction numbers move when nothing about the bundle changes.

The bundle evaluation scores the "w/o LLM" reconstructions (ẑ_c and ẑ_v of the main extractor, empty
prompt, β = 0.93, seed 0, 20 steps) on the first 10 test recordings of each subject, and CLIP two-way
identification within each subject's 10. A rebuilt bundle is "within noise" of the committed one when its
numbers differ by no more than the same bundle's numbers differ between equally valid evaluations. This
measures two such differences on one bundle, with the evaluation's own functions:

- which recordings: the 100 test recordings per subject cut into windows of 10 (window 0 is the
  evaluation's), each scored like the evaluation; the spread across windows;
- which diffusion noise: window 0 reconstructed with seeds 0, 1, 2, ...

    python notebooks/experiments/recon_noise/noise.py checkpoints/demo [--seeds 3] [--windows 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from neurochat.data import TrialBank, test_set
from neurochat.evaluate import load_main_models
from neurochat.evaluate.recon import image_scores, predict_features, reconstruct_all
from neurochat.models.unclip import load_unclip
from neurochat.models.vision import VisionEncoders
from neurochat.nsd import NSDDataset
from neurochat.paths import ensure_simnsd
from neurochat.presets import get_preset
from neurochat.reconstruct import Reconstructor

METRICS = ("pixcorr", "ssim", "clip_2way")


def window_rows(subjects: np.ndarray, window: int, size: int) -> np.ndarray:
    """Rows `window*size .. (window+1)*size` of each subject's test rows (window 0: `select_rows`'s)."""
    return np.concatenate([np.flatnonzero(subjects == s)[window * size : (window + 1) * size] for s in np.unique(subjects)])


def spread(name: str, scores: list[dict]) -> str:
    parts = []
    for metric in METRICS:
        values = np.array([s[metric] for s in scores])
        parts.append(f"{metric} {values.mean():.3f} ± {values.std(ddof=1):.3f} [{values.min():.3f}, {values.max():.3f}]")
    return f"{name} ({len(scores)}): " + "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("--windows", type=int, default=10, help="windows of --size recordings per subject")
    parser.add_argument("--size", type=int, default=10, help="recordings per subject in a window (the evaluation's 10)")
    parser.add_argument("--seeds", type=int, default=3, help="diffusion seeds for window 0")
    parser.add_argument("--protocols", nargs="+", default=["averaged", "single"])
    parser.add_argument("--data", help="SimNSD tree (default: the cached demo one)")
    args = parser.parse_args()

    dataset = NSDDataset(Path(args.data) if args.data else ensure_simnsd("demo"))
    preset = get_preset("demo", Path(args.bundle))
    vision = VisionEncoders.from_preset(preset)
    main_bundle, _, _ = load_main_models(preset, log=lambda *_: None)
    reconstructor = Reconstructor(load_unclip(preset))
    bank = TrialBank(dataset, main_bundle.preprocessor)
    for protocol in args.protocols:
        ts = test_set(bank, protocol)
        by_window, by_seed = [], []
        for window in range(args.windows):
            rows = window_rows(ts.subject, window, args.size)
            if len(rows) < 2 * len(np.unique(ts.subject)):
                break
            clip, vae, _ = predict_features(main_bundle, bank, ts, rows)
            seeds = range(args.seeds) if window == 0 else [0]
            for seed in seeds:
                pictures = reconstruct_all(reconstructor, clip, vae, "", 0.93, seed=seed, steps=20)
                scores = image_scores(pictures, dataset.images(ts.nsd_id[rows]), ts.subject[rows], vision, None)
                print(f"no_llm {protocol:8} window {window} seed {seed}: "
                      + " ".join(f"{m} {scores[m]:.3f}" for m in METRICS), flush=True)  # fmt: skip
                if seed == 0:
                    by_window.append(scores)
                if window == 0:
                    by_seed.append(scores)
        print(spread(f"no_llm {protocol} across windows of {args.size} per subject, seed 0", by_window))
        print(spread(f"no_llm {protocol} window 0 across seeds", by_seed))


if __name__ == "__main__":
    main()
