"""Scan SimNSD's encoding gains and noise level quickly: the signal's three parts (early visual, objects,
scene) and the noise are simulated once per design, then mixed with any gains and read by the same
per-subject ridge as `python -m neurochat.sim.calibrate` (whose numbers decide; this only narrows the search).

    python notebooks/experiments/simnsd_calibration/scan.py --sessions 4 --subject 0
"""
import argparse
import dataclasses
import itertools

import numpy as np
import torch

from neurochat.models.vision import VisionEncoders
from neurochat.presets import get_preset
from neurochat.sim.brain import ConceptBlobs, SimulatedSubject, image_features
from neurochat.sim.calibrate import _ridge_predict
from neurochat.sim.concepts import OBJECTS
from neurochat.sim.config import SIZES, SUBJECTS
from neurochat.sim.generate import Design, session_betas
from neurochat.sim.render import render_scene
from neurochat.sim.scenes import sample_scene

parser = argparse.ArgumentParser()
parser.add_argument("--sessions", type=int, default=4)
parser.add_argument("--subject", type=int, default=0)
parser.add_argument("--position-tuning", type=float, default=0.0)
parser.add_argument("--evc", default="1.6,3.2")
parser.add_argument("--concept", default="2.2,4.4,6.6")
parser.add_argument("--scene", default="1.6,3.2")
parser.add_argument("--noise", default="0.5,1,1.5,2", help="scales of the demo's noise (smooth, white and offset together)")
parser.add_argument("--ridge", default="300,3000")
args = parser.parse_args()
torch.set_num_threads(1)
seed = 0
config = dataclasses.replace(SIZES["demo"], n_sessions=args.sessions, position_tuning=args.position_tuning)
design = Design.sample(config, seed)
scenes = [sample_scene(seed, i) for i in range(config.n_images)]
images = np.stack([render_scene(s, config.image_size) for s in scenes])
features = image_features(images)
blobs = ConceptBlobs.sample(seed)
preset = get_preset("demo")
clip = np.asarray(VisionEncoders(preset.clip_dir, preset.unclip_dir).image_embeddings(images), np.float64)
clip /= np.linalg.norm(clip, axis=1, keepdims=True)
names = [o.name for o in OBJECTS]
objects = np.array([[n in {o.name for o in s.objects} for n in names] for s in scenes], np.float64)
shared = np.sort(design.shared_ids)

brain = SimulatedSubject.build(config, seed, SUBJECTS[args.subject], blobs)
own = design.subject_images[args.subject]
shown = design.trial_image(args.subject)
order = design.master_ordering
parts = {}
for part, gains in (("evc", dict(evc_gain=1.0, concept_gain=0.0, scene_gain=0.0)),
                    ("concept", dict(evc_gain=0.0, concept_gain=1.0, scene_gain=0.0)),
                    ("scene", dict(evc_gain=0.0, concept_gain=0.0, scene_gain=1.0))):
    parts[part] = brain.responses(dataclasses.replace(config, **gains), features[own], [scenes[i] for i in own])[order]
rng = np.random.default_rng([seed, 7300, args.subject])
zeros = np.zeros((config.trials_per_session, len(brain.visual_index)), np.float32)
noise = np.concatenate([session_betas(config, brain, zeros, rng)[:, brain.visual_index] for _ in range(config.n_sessions)])
session = np.repeat(np.arange(config.n_sessions), config.trials_per_session)
train = ~np.isin(shown, shared)
print(f"sessions {args.sessions}, subject {SUBJECTS[args.subject]}, {train.sum()} training trials, {noise.shape[1]} voxels")


def score(betas, ridge):
    for s in range(config.n_sessions):
        rows = session == s
        betas[rows] = (betas[rows] - betas[rows].mean(0)) / (betas[rows].std(0) + 1e-6)
    x = betas[train].astype(np.float64)
    first = np.array([np.flatnonzero(shown == i)[0] for i in shared])
    out = {}
    for protocol, x_test in (("avg", np.stack([betas[shown == i].mean(0) for i in shared]).astype(np.float64)),
                             ("single", betas[first].astype(np.float64))):
        p = _ridge_predict(x, clip[shown[train]], x_test, ridge)
        out[f"id_{protocol}"] = np.mean((p @ clip[shared].T).argmax(1) == np.arange(len(shared)))
        o = _ridge_predict(x, objects[shown[train]], x_test, ridge) - objects[shown[train]].mean(0)
        out[f"obj_{protocol}"] = np.mean(objects[shared, o.argmax(1)])
    return out


floats = lambda text: [float(v) for v in text.split(",")]  # noqa: E731
for evc, concept, scene, k, ridge in itertools.product(floats(args.evc), floats(args.concept), floats(args.scene),
                                                       floats(args.noise), floats(args.ridge)):
    betas = (evc * parts["evc"] + concept * parts["concept"] + scene * parts["scene"] + k * noise).astype(np.float32)
    r = score(betas, ridge)
    print(f"evc {evc:4.1f} concept {concept:4.1f} scene {scene:4.1f} noise×{k:3.1f} ridge {ridge:5.0f}: "
          f"id avg {r['id_avg']:.2f} single {r['id_single']:.2f} (ratio {r['id_single'] / max(r['id_avg'], 1e-9):.2f}) "
          f"objects avg {r['obj_avg']:.2f} single {r['obj_single']:.2f}", flush=True)
