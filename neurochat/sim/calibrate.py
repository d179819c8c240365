"""How decodable a SimNSD configuration is, measured the way NSD's decodability is published.

    python -m neurochat.sim.calibrate --size demo                       # the size's own parameters
    python -m neurochat.sim.calibrate --size demo --set concept_gain=3  # try another value

The betas are simulated in memory exactly as `generate` writes them (same encoding model, same noise,
same random draws), z-scored per session and voxel as NSD users do, and read by a per-subject ridge
regression from the nsdgeneral voxels, trained on the subject's own pictures (one row per trial):
- `identification_top1`: the ridge predicts the CLIP image embedding; the test recording is
  identified when its own picture is the nearest of the shared test pictures (cosine), averaged over
  its three repetitions and for single trials (published NSD decoders: ≥ 90% among 300 averaged);
- `object_first_choice`: a ridge to the picture's objects; the best-scoring object is in the picture.
A linear reader is a floor for what the trained extractor reaches; the extractor's own numbers come
from `python -m neurochat.evaluate extractor`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Sequence

import numpy as np

from neurochat.errors import ConfigError

# What the demo size must reach (SIMNSD.md, "Calibration"): averaged identification among the shared
# test pictures ≥ 0.8, single trials at most 0.7 × that, objects read linearly first-choice ≥ 0.9.
TARGETS = {"identification_averaged": 0.80, "single_over_averaged": 0.70, "object_first_choice": 0.90}


def simulate_visual_betas(config, seed: int, subject_index: int, design, features, scenes, blobs):
    """(betas at the subject's nsdgeneral voxels, z-scored per session: float32 (trials, V), 73k id per trial)."""
    from neurochat.sim.brain import SimulatedSubject
    from neurochat.sim.config import SUBJECTS
    from neurochat.sim.generate import session_betas

    brain = SimulatedSubject.build(config, seed, SUBJECTS[subject_index], blobs)
    own_ids = design.subject_images[subject_index]
    signal = brain.responses(config, features[own_ids], [scenes[i] for i in own_ids])
    rng = np.random.default_rng([seed, 7300, subject_index])  # the draws `generate` makes
    sessions = []
    for session in range(config.n_sessions):
        trials = np.arange(session * config.trials_per_session, (session + 1) * config.trials_per_session)
        betas = session_betas(config, brain, signal[design.master_ordering[trials]], rng)[:, brain.visual_index]
        betas = np.round(betas * 300.0) / 300.0  # the int16 storage's resolution
        sessions.append((betas - betas.mean(0)) / (betas.std(0) + 1e-6))
    return np.concatenate(sessions).astype(np.float32), design.trial_image(subject_index)


def _ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, ridge: float) -> np.ndarray:
    """Kernel ridge (trials ≪ voxels): ŷ = X_test Xᵀ (X Xᵀ + λI)⁻¹ (Y − Ȳ) + Ȳ."""
    mean = y_train.mean(0)
    dual = np.linalg.solve(x_train @ x_train.T + ridge * np.eye(len(x_train)), y_train - mean)
    return x_test @ (x_train.T @ dual) + mean


def linear_decodability(config, seed: int, vision, subjects: Sequence[int] = (0, 1, 2, 3), ridge: float = 3e3) -> dict:
    """The calibration numbers of a SimNSD configuration (module docstring), means over `subjects`."""
    from neurochat.sim.brain import ConceptBlobs, image_features
    from neurochat.sim.concepts import OBJECTS
    from neurochat.sim.generate import Design
    from neurochat.sim.render import render_scene
    from neurochat.sim.scenes import sample_scene

    config = config.validate()
    design = Design.sample(config, seed)
    scenes = [sample_scene(seed, image_id) for image_id in range(config.n_images)]
    images = np.stack([render_scene(scene, config.image_size) for scene in scenes])
    features = image_features(images)
    blobs = ConceptBlobs.sample(seed)
    clip = np.asarray(vision.image_embeddings(images), dtype=np.float64)
    clip /= np.linalg.norm(clip, axis=1, keepdims=True)
    names = [o.name for o in OBJECTS]
    objects = np.array([[name in {o.name for o in s.objects} for name in names] for s in scenes], np.float64)
    shared = np.sort(design.shared_ids)

    per_subject = []
    for index in subjects:
        betas, shown = simulate_visual_betas(config, seed, index, design, features, scenes, blobs)
        train = ~np.isin(shown, shared)
        x_train = betas[train].astype(np.float64)
        # the test recordings: each shared picture's three repetitions averaged, and its first alone
        first = np.array([np.flatnonzero(shown == i)[0] for i in shared])
        averaged = np.stack([betas[shown == i].mean(0) for i in shared]).astype(np.float64)
        single = betas[first].astype(np.float64)
        result = {}
        for protocol, x_test in (("averaged", averaged), ("single", single)):
            predicted = _ridge_predict(x_train, clip[shown[train]], x_test, ridge)
            predicted /= np.linalg.norm(predicted, axis=1, keepdims=True)
            similarity = predicted @ clip[shared].T  # (test, candidates)
            result[f"identification_{protocol}"] = float(np.mean(similarity.argmax(1) == np.arange(len(shared))))
            scores = _ridge_predict(x_train, objects[shown[train]], x_test, ridge) - objects[shown[train]].mean(0)
            result[f"objects_{protocol}"] = float(np.mean(objects[shared, scores.argmax(1)]))
        per_subject.append(result)
    means = {key: float(np.mean([r[key] for r in per_subject])) for key in per_subject[0]}
    means["single_over_averaged"] = means["identification_single"] / max(means["identification_averaged"], 1e-9)
    return {"config": config.to_json(), "subjects": list(subjects), "ridge": ridge, "per_subject": per_subject, **means,
            "targets": TARGETS,
            "meets_targets": bool(means["identification_averaged"] >= TARGETS["identification_averaged"]
                                  and means["single_over_averaged"] <= TARGETS["single_over_averaged"]
                                  and means["objects_averaged"] >= TARGETS["object_first_choice"])}  # fmt: skip


def _override(config, assignments: Sequence[str]):
    fields = {f.name: f for f in dataclasses.fields(config)}
    changes = {}
    for assignment in assignments:
        name, _, value = assignment.partition("=")
        if name not in fields or not value:
            raise ConfigError(f"--set {assignment!r}: expected NAME=VALUE with NAME one of {', '.join(fields)}")
        changes[name] = type(getattr(config, name))(value)
    return dataclasses.replace(config, **changes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurochat.sim.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo", help="a SimNSD size (default: demo)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="override a parameter of the size")
    parser.add_argument("--subjects", type=int, default=4, help="how many subjects to simulate (default: all four)")
    parser.add_argument("--ridge", type=float, default=3e3)
    parser.add_argument("--clip", help="CLIP folder (default: the demo preset's)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)

    from neurochat.cli import write_json
    from neurochat.models.vision import VisionEncoders
    from neurochat.presets import get_preset
    from neurochat.sim.config import SIZES

    if args.size not in SIZES:
        raise ConfigError(f"unknown size {args.size!r}: choose one of {', '.join(SIZES)}")
    started = time.perf_counter()
    preset = get_preset("demo")
    vision = VisionEncoders(args.clip or preset.clip_dir, preset.unclip_dir)
    config = _override(SIZES[args.size], args.set)
    result = linear_decodability(config, args.seed, vision, subjects=range(args.subjects), ridge=args.ridge)
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps({k: v for k, v in result.items() if k not in ("config", "per_subject", "targets")}, indent=1))
    if args.json:
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    from neurochat.cli import run_main

    run_main(main)
