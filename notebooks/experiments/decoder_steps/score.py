"""Experiment (issue 8): score a bundle's reconstructions exactly as `train.demo_bundle`'s evaluate
stage does (its demo sizes: 10 recordings per subject, 20 steps) and print them beside the committed
manifest's. On the committed bundle itself it reproduces the manifest's decoder numbers.

    python notebooks/experiments/decoder_steps/score.py BUNDLE [--json OUT.json]
"""

import argparse
import json
import time
from pathlib import Path

import torch

from neurochat.evaluate import load_main_models
from neurochat.evaluate.recon import evaluate_reconstruction
from neurochat.models.unclip import load_unclip
from neurochat.models.vision import VisionEncoders
from neurochat.nsd import NSDDataset
from neurochat.paths import CHECKPOINTS, ensure_simnsd
from neurochat.presets import get_preset
from neurochat.reconstruct import Reconstructor
from train.bundle_evaluation import EVALUATION_SIZES, compare_evaluations, decoder_headline

parser = argparse.ArgumentParser()
parser.add_argument("bundle", type=Path)
parser.add_argument("--json", type=Path, help="also write the numbers here")
args = parser.parse_args()
torch.set_num_threads(1)
started = time.perf_counter()
sizes = EVALUATION_SIZES["demo"]
preset = get_preset("demo", args.bundle)
dataset = NSDDataset(ensure_simnsd("demo"))
vision = VisionEncoders.from_preset(preset)
main, flattened, brainllm = load_main_models(preset)
recon = evaluate_reconstruction(dataset, vision, Reconstructor(load_unclip(preset)), main, flattened, brainllm,
                                per_subject=sizes["per_subject"], steps=sizes["steps"])  # fmt: skip
results = {"decoder": decoder_headline(recon)}
if args.json:
    args.json.write_text(json.dumps(results, indent=1) + "\n")
committed = json.loads((CHECKPOINTS / "demo" / "manifest.json").read_text())["evaluation"]
print("\n".join(compare_evaluations(results, committed)))
print(f"{time.perf_counter() - started:.0f} s")
