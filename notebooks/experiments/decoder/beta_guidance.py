"""β and classifier-free guidance for the explorer's default: object_hit, PixCorr and CLIP two-way of the
reconstructions from the averaged test recordings (the LLM's prompt, 5 recordings per subject, one seed).

    python notebooks/experiments/decoder/beta_guidance.py [--weights ROOT] [--per-subject 5]
"""
import argparse

import numpy as np
import torch

from neurochat.data import TrialBank, test_set
from neurochat.evaluate.decoder import object_namer, picture_objects
from neurochat.evaluate.recon import image_scores, llm_prompts, predict_features, reconstruct_all, select_rows
from neurochat.models.bundle import load_main_models
from neurochat.models.unclip import load_unclip
from neurochat.models.vision import VisionEncoders
from neurochat.nsd import NSDDataset
from neurochat.paths import ensure_simnsd
from neurochat.presets import get_preset
from neurochat.reconstruct import Reconstructor

parser = argparse.ArgumentParser()
parser.add_argument("--weights")
parser.add_argument("--per-subject", type=int, default=5)
parser.add_argument("--betas", default="0.5,0.7,0.8,0.9,0.93,0.96,1.0")
parser.add_argument("--guidance", default="3,6")
args = parser.parse_args()
torch.set_num_threads(1)
preset = get_preset("demo", args.weights)
dataset = NSDDataset(ensure_simnsd("demo"))
vision = VisionEncoders.from_preset(preset)
main, _, brainllm = load_main_models(preset)
reconstructor = Reconstructor(load_unclip(preset))
bank = TrialBank(dataset, main.preprocessor)
ts = test_set(bank, "averaged")
rows = select_rows(ts, args.per_subject)
stimuli, subjects = dataset.images(ts.nsd_id[rows]), ts.subject[rows]
objects = picture_objects(dataset, ts.nsd_id[rows])
namer = object_namer(vision, objects)
clip, vae, fmri = predict_features(main, bank, ts, rows)
prompts = llm_prompts(brainllm, fmri)
for guidance in (float(g) for g in args.guidance.split(",")):
    for beta in (float(b) for b in args.betas.split(",")):
        pictures = np.concatenate([reconstructor(clip[i:i + 16], vae[i:i + 16], prompts[i:i + 16], beta=beta, seed=0,
                                                 guidance=guidance) for i in range(0, len(rows), 16)])
        s = image_scores(pictures, stimuli, subjects, vision, None, objects, namer)
        print(f"guidance {guidance:g} β {beta:.2f}: object_hit {s['object_hit']:.1%} PixCorr {s['pixcorr']:.3f} "
              f"SSIM {s['ssim']:.3f} CLIP two-way {s['clip_2way']:.1%}", flush=True)
