"""The Table 2 analog: visual reconstruction from the test recordings (paper Sec. 4.3, App. C.1).

Rows, on the shared test images, averaged over repetitions and single-trial:
- ours: ẑ_c and ẑ_v of ViT3D, the LLM's answer to Table 5's instruction as prompt a_r, β = 0.93;
- no_llm ("w/o LLM"): the same with an empty prompt;
- no_vae ("w/o VAE feature"): β = 1, so ẑ_v plays no part;
- flattened ("w/o ViT3D"): the flattened-voxel extractor's ẑ_c and ẑ_v, empty prompt (the LLM
  reads ViT3D tokens, so it cannot prompt for the flattened model; compare with no_llm).
Metrics: PixCorr and SSIM at the stimulus resolution, CLIP two-way identification with the preset's
CLIP, object_hit (CLIP's zero-shot first choice over the object names is one of the picture's true
objects: the objects must show, a right background is not enough), and the backbone metrics when
their weights are given (otherwise null).

`sweep_beta` is the Fig. 5 analog (metrics against β, with and without the LLM's prompt) and
`beta_grid` the Fig. 6 analog (one stimulus across β).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from neurochat.data import TrialBank, test_set
from neurochat.evaluate.decoder import object_hit, object_namer, picture_objects
from neurochat.image_metrics import backbone_metrics, clip_two_way, pixcorr, ssim
from neurochat.language import RECONSTRUCTION_INSTRUCTION
from neurochat.sim.concepts import CONCEPT_NAMES

PROTOCOLS = ("averaged", "single")
FIG6_BETAS = (0.0, 0.3, 0.45, 0.6, 0.75, 0.85, 0.9, 0.93, 0.96, 0.98, 1.0)  # the β values of Fig. 6


def select_rows(ts, per_subject: int | None) -> np.ndarray:
    """The first `per_subject` test rows of each subject (all when None)."""
    if per_subject is None:
        return np.arange(len(ts))
    return np.concatenate([np.flatnonzero(ts.subject == s)[:per_subject] for s in np.unique(ts.subject)])


@torch.no_grad()
def predict_features(bundle, bank: TrialBank, ts, rows: np.ndarray, batch_size: int = 64):
    """ẑ_c (M, d), ẑ_v (M, C, h, w) and the LLM's fMRI tokens (M, T, D) for test rows."""
    tokens = ts.tokens(bank, bundle.preprocessor)[torch.as_tensor(rows)]
    clips, vaes, fmri = [], [], []
    for start in range(0, len(tokens), batch_size):
        output = bundle.model(bundle.tokens(tokens[start : start + batch_size]))
        clips.append(output.clip)
        vaes.append(output.vae)
        fmri.append(output.penultimate)
    return torch.cat(clips), torch.cat(vaes), torch.cat(fmri)


def llm_prompts(brainllm, fmri: torch.Tensor, batch_size: int = 16, distinct_concepts=CONCEPT_NAMES) -> list[str]:
    """The LLM's reconstruction prompt a_r for each recording, as the explorer asks for it: greedy,
    each of SimNSD's concepts named at most once (`distinct_concepts=None`: plain greedy)."""
    prompts = []
    for start in range(0, len(fmri), batch_size):
        replies = brainllm.generate(fmri[start : start + batch_size], RECONSTRUCTION_INSTRUCTION,
                                    distinct_concepts=distinct_concepts)  # fmt: skip
        prompts += [reply.text for reply in replies]
    return prompts


def reconstruct_all(reconstructor, clip, vae, prompts, beta: float, seed: int, steps: int, batch_size: int = 16) -> np.ndarray:
    pictures = []
    for start in range(0, len(clip), batch_size):
        stop = start + batch_size
        prompt = prompts[start:stop] if isinstance(prompts, list) else prompts
        pictures.append(reconstructor(clip[start:stop], vae[start:stop], prompt, beta=beta, seed=seed, steps=steps))
    return np.concatenate(pictures)


def image_scores(pictures: np.ndarray, stimuli: np.ndarray, subjects: np.ndarray, vision, backbones: str | Path | None,
                 objects=None, namer=None) -> dict:  # fmt: skip
    """PixCorr, SSIM, CLIP 2-way (within each subject's test set, averaged), object_hit (given the
    pictures' true `objects` and an `ObjectNamer`) and backbone metrics."""
    clip_per_subject = [clip_two_way(pictures[subjects == s], stimuli[subjects == s], vision)
                        for s in np.unique(subjects) if (subjects == s).sum() > 1]  # fmt: skip
    two_way = float(np.mean(clip_per_subject)) if clip_per_subject else None  # None: no subject has two pictures
    scores = {"pixcorr": pixcorr(pictures, stimuli), "ssim": ssim(pictures, stimuli), "clip_2way": two_way}
    if objects is not None:
        scores["object_hit"] = object_hit(pictures, objects, namer)
    scores.update(backbone_metrics(pictures, stimuli, backbones))
    return scores


def mean_over_seeds(by_seed: list[dict]) -> dict:
    """`image_scores` of one row under several diffusion seeds → each metric's mean (None stays None), and
    with more than one seed "seed_sd": {metric: standard deviation across the seeds}."""
    scores = {k: (None if v is None else float(np.mean([s[k] for s in by_seed]))) for k, v in by_seed[0].items()}
    if len(by_seed) > 1:
        scores["seed_sd"] = {k: float(np.std([s[k] for s in by_seed], ddof=1)) for k, v in by_seed[0].items() if v is not None}
    return scores


def evaluate_reconstruction(dataset, vision, reconstructor, main_bundle, flattened_bundle, brainllm, *,
                            per_subject: int | None = None, beta: float = 0.93, seeds: Sequence[int] = (0,), steps: int = 20,
                            backbones: str | Path | None = None, log=print) -> dict:  # fmt: skip
    """{"ours": {"averaged": {...}, "single": {...}}, "no_llm": ..., "no_vae": ..., "flattened": ...}.

    Each row is reconstructed once per diffusion seed in `seeds` and its metrics are the means over the
    seeds; with more than one seed, "seed_sd" holds each metric's standard deviation across them (one
    seed's spread: on 40 pictures CLIP two-way moves by several points between seeds, so a single seed
    cannot tell two decoders apart; `notebooks/experiments/recon_noise`).
    """
    bank = TrialBank(dataset, main_bundle.preprocessor)
    results: dict = {name: {} for name in ("ours", "no_llm", "no_vae", "flattened")}
    for protocol in PROTOCOLS:
        ts = test_set(bank, protocol)
        rows = select_rows(ts, per_subject)
        stimuli = dataset.images(ts.nsd_id[rows])
        subjects = ts.subject[rows]
        objects = picture_objects(dataset, ts.nsd_id[rows])
        namer = object_namer(vision, objects)
        clip, vae, fmri = predict_features(main_bundle, bank, ts, rows)
        prompts = llm_prompts(brainllm, fmri) if brainllm is not None else None
        runs = {"no_llm": ("", beta, clip, vae)}
        if prompts is not None:
            runs["ours"] = (prompts, beta, clip, vae)
            runs["no_vae"] = (prompts, 1.0, clip, vae)
        if flattened_bundle is not None:
            f_clip, f_vae, _ = predict_features(flattened_bundle, bank, ts, rows)
            runs["flattened"] = ("", beta, f_clip, f_vae)
        for name, (prompt, run_beta, c, v) in runs.items():
            by_seed = [image_scores(reconstruct_all(reconstructor, c, v, prompt, run_beta, seed, steps), stimuli, subjects,
                                    vision, backbones, objects, namer) for seed in seeds]  # fmt: skip
            results[name][protocol] = mean_over_seeds(by_seed)
            log(f"{name:9} {protocol:8} " + " ".join(f"{k}={v:.3f}" for k, v in results[name][protocol].items()
                                                     if isinstance(v, float)))  # fmt: skip
    return {name: (by_protocol or None) for name, by_protocol in results.items()}


def sweep_beta(dataset, vision, reconstructor, main_bundle, brainllm, *, betas=FIG6_BETAS, per_subject: int = 10,
               seed: int = 0, steps: int = 20, log=print) -> dict:  # fmt: skip
    """Fig. 5 analog: {"beta": [...], "with_llm": {metric: [...]}, "without_llm": {metric: [...]}} (averaged trials)."""
    bank = TrialBank(dataset, main_bundle.preprocessor)
    ts = test_set(bank, "averaged")
    rows = select_rows(ts, per_subject)
    stimuli = dataset.images(ts.nsd_id[rows])
    subjects = ts.subject[rows]
    objects = picture_objects(dataset, ts.nsd_id[rows])
    namer = object_namer(vision, objects)
    clip, vae, fmri = predict_features(main_bundle, bank, ts, rows)
    prompts = llm_prompts(brainllm, fmri) if brainllm is not None else None
    curves: dict = {"beta": list(betas), "with_llm": {}, "without_llm": {}}
    for label, prompt in (("with_llm", prompts), ("without_llm", "")):
        if prompt is None:
            continue
        for b in betas:
            pictures = reconstruct_all(reconstructor, clip, vae, prompt, b, seed, steps)
            for metric, value in image_scores(pictures, stimuli, subjects, vision, None, objects, namer).items():
                if value is not None:
                    curves[label].setdefault(metric, []).append(value)
            log(f"β={b:.2f} {label}: " + " ".join(f"{m}={v[-1]:.3f}" for m, v in curves[label].items()))
    return curves


def plot_sweep(curves: dict, path: str | Path) -> Path:
    """The β sweep as a PNG: one panel per metric, with and without the LLM's prompt."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(curves["without_llm"])
    figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for axis, metric in zip(np.atleast_1d(axes), metrics):
        for label, style in (("with_llm", "o-"), ("without_llm", "s--")):
            if metric in curves.get(label, {}):
                axis.plot(curves["beta"], curves[label][metric], style, label=label.replace("_", " "))
        axis.set_xlabel("β")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
    np.atleast_1d(axes)[0].legend()
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def beta_grid(dataset, reconstructor, main_bundle, brainllm, path: str | Path, *, betas=FIG6_BETAS, row: int = 0,
              seed: int = 0, steps: int = 20) -> Path:  # fmt: skip
    """Fig. 6 analog: one stimulus, then its reconstructions across β with and without the LLM prompt."""
    from PIL import Image

    bank = TrialBank(dataset, main_bundle.preprocessor)
    ts = test_set(bank, "averaged")
    rows = np.array([row])
    clip, vae, fmri = predict_features(main_bundle, bank, ts, rows)
    prompt = llm_prompts(brainllm, fmri)[0] if brainllm is not None else ""
    stimulus = dataset.image(int(ts.nsd_id[row]))
    size = stimulus.shape[0]
    lines = []
    for text in (prompt, ""):
        pictures = [reconstruct_all(reconstructor, clip, vae, text, b, seed, steps)[0] for b in betas]
        lines.append([stimulus] + [np.asarray(Image.fromarray(p).resize((size, size))) for p in pictures])
    canvas = np.concatenate([np.concatenate(line, axis=1) for line in lines], axis=0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path)
    return path
