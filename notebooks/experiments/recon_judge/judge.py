"""Experiment (issue 8): how much of a rebuilt bundle's reconstruction score is the judge.

The bundle evaluation scores CLIP two-way identification with the bundle's own CLIP, so two bundles
with different CLIPs are judged by different judges. This reconstructs the "w/o LLM" rows (ẑ_c and ẑ_v
of the main extractor, empty prompt, β = 0.93, the evaluation's seed and 20 steps) of bundle BUNDLE once
and scores the same pictures with BUNDLE's CLIP and with each JUDGE bundle's CLIP.

    python notebooks/experiments/recon_judge/judge.py BUNDLE --judge checkpoints/demo [--per-subject 10]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neurochat.data import TrialBank, test_set
from neurochat.evaluate import load_main_models
from neurochat.evaluate.recon import PROTOCOLS, image_scores, predict_features, reconstruct_all, select_rows
from neurochat.models.unclip import load_unclip
from neurochat.models.vision import VisionEncoders
from neurochat.nsd import NSDDataset
from neurochat.paths import ensure_simnsd
from neurochat.presets import get_preset
from neurochat.reconstruct import Reconstructor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", help="the bundle whose reconstructions are scored")
    parser.add_argument("--judge", nargs="+", default=["checkpoints/demo"], help="bundles whose CLIP also scores them")
    parser.add_argument("--per-subject", type=int, default=10)
    parser.add_argument("--data", help="SimNSD tree (default: the cached demo one)")
    args = parser.parse_args()

    dataset = NSDDataset(Path(args.data) if args.data else ensure_simnsd("demo"))
    preset = get_preset("demo", Path(args.bundle))
    judges = {args.bundle: VisionEncoders.from_preset(preset)}
    judges.update({judge: VisionEncoders.from_preset(get_preset("demo", Path(judge))) for judge in args.judge})
    main_bundle, _, _ = load_main_models(preset, log=lambda *_: None)
    reconstructor = Reconstructor(load_unclip(preset))
    bank = TrialBank(dataset, main_bundle.preprocessor)
    for protocol in PROTOCOLS:
        ts = test_set(bank, protocol)
        rows = select_rows(ts, args.per_subject)
        clip, vae, _ = predict_features(main_bundle, bank, ts, rows)
        pictures = reconstruct_all(reconstructor, clip, vae, "", 0.93, seed=0, steps=20)
        stimuli, subjects = dataset.images(ts.nsd_id[rows]), ts.subject[rows]
        for judge, vision in judges.items():
            scores = image_scores(pictures, stimuli, subjects, vision, None)
            print(f"no_llm {protocol:8} judged by {judge}'s CLIP: PixCorr {scores['pixcorr']:.3f} SSIM {scores['ssim']:.3f} "
                  f"CLIP two-way {scores['clip_2way']:.1%}", flush=True)


if __name__ == "__main__":
    main()
