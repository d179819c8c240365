"""Scoring concept localization and ablation against SimNSD's ground truth (paper Sec. 4.4).

Localization: for every test recording (averaged over repetitions) and every concept present in
its picture (its objects and its scene), the ROC-AUC of the heatmap against the subject's
ground-truth map of that concept (voxels with selectivity ≥ 0.5 are positives), over nsdgeneral
voxels — for each single model of the ensemble, the ensemble, and a random map; for the encoding
maps (the default method, fitted on the subject's training trials only) and for GradCAM (the
paper's method) side by side.

Ablation: the concept's top-q% voxels are zeroed, the recording is encoded and reconstructed again
(same seed and β). CLIP similarity between the reconstruction and each present concept's text is
compared before and after; a case counts when the removed concept's similarity drops more than
every other present concept's ("the removed concept falls below the others"). The reconstruction
prompt is empty here, so only the brain signal can remove the concept: a prompt written before
the ablation would still name it. The same comparison is made one step earlier, on the extractor's
predicted CLIP embedding ẑ_c ("embedding"), which separates what the extractor forgets from what
the picture keeps (the decoder also paints from ẑ_v, which early visual cortex feeds).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neurochat.ablate import ablate
from neurochat.data import TrialBank, test_set
from neurochat.localize import ConceptLocalizer
from neurochat.metrics import roc_auc, spread_over_cases
from neurochat.sim.truth import AnswerKey
from neurochat.vocabulary import SCENES

TRUTH_THRESHOLD = 0.5  # a voxel belongs to a concept where its ground-truth selectivity is ≥ this


def native_volume(bank: TrialBank, subject: str, support_values: np.ndarray) -> np.ndarray:
    """Support-voxel values → a native (X, Y, Z) volume, zero elsewhere."""
    operator = bank.operators[subject]
    volume = np.zeros(int(np.prod(operator.native_shape)), np.float32)
    volume[operator.support] = support_values
    return volume.reshape(operator.native_shape)


def evaluate_localization(dataset, localizer: ConceptLocalizer, key: AnswerKey, *, max_recordings: int | None = None,
                          seed: int = 0, log=print) -> dict:  # fmt: skip
    """Mean AUCs of the encoding maps (the default method) and of GradCAM (the paper's), side by side.

    {"method": "encoding", "ensemble": .., "single": {patch size: ..}, "random": .., "n": cases,
     "gradcam": {"ensemble": .., "single": {..}}}
    """
    bank = TrialBank(dataset, localizer.bundles[0].preprocessor)
    rows = test_set(bank, "averaged")
    rng = np.random.default_rng(seed)
    aucs: dict[str, dict[str, list[float]]] = {"encoding": {}, "gradcam": {}}
    random_aucs: list[float] = []
    order = np.arange(len(rows)) if max_recordings is None else np.arange(min(max_recordings, len(rows)))
    for row in order:
        subject = bank.subjects[int(rows.subject[row])]
        mask = dataset.nsdgeneral(subject) > 0
        volume = native_volume(bank, subject, rows.voxels[row])
        for concept in key.concepts_in(int(rows.nsd_id[row])):
            truth = key.concept_map(subject, concept)[mask] >= TRUTH_THRESHOLD
            if truth.all() or not truth.any():
                continue
            for method, scores in aucs.items():
                heatmap = localizer.localize(volume, concept, subject=subject, affine=dataset.affine(subject), mask=mask,
                                             method=method)  # fmt: skip
                scores.setdefault("ensemble", []).append(roc_auc(heatmap.native[mask], truth))
                for size, native in heatmap.per_model.items():
                    scores.setdefault(str(size), []).append(roc_auc(native[mask], truth))
            random_aucs.append(roc_auc(rng.random(int(mask.sum())), truth))
    n = len(random_aucs)
    log(f"localization: {n} (recording, concept) cases")

    def summary(scores: dict[str, list[float]]) -> dict:
        # case_sd: the spread of the ensemble's AUC over the cases, for a rebuild's comparison (`--compare`)
        return {"ensemble": float(np.mean(scores["ensemble"])),
                "single": {size: float(np.mean(v)) for size, v in scores.items() if size != "ensemble"},
                "case_sd": {"ensemble": spread_over_cases(scores["ensemble"])}}  # fmt: skip

    return {"method": "encoding", **summary(aucs["encoding"]), "random": float(np.mean(random_aucs)), "n": n,
            "gradcam": summary(aucs["gradcam"])}  # fmt: skip


def evaluate_ablation(dataset, localizer: ConceptLocalizer, reconstructor, vision, key: AnswerKey, *,
                      fraction: float = 0.1, beta: float = 0.93, seed: int = 0, steps: int = 20,
                      max_cases: int = 60, log=print) -> dict:  # fmt: skip
    """{"removed_below_others": share, "drop_removed": mean, "drop_others": mean, "n": cases,
    "fraction": q, "beta": β, "embedding": {the same three, measured on ẑ_c instead of the picture},
    "removed_below_objects": share, "objects_n": cases, "scene_kept": share}.

    `removed_below_others` judges the change: the removed concept's similarity fell more than every
    other present concept's. `removed_below_objects` judges what the ablated picture shows: the removed
    object's zero-shot score is below every other object in the picture (cases with another object).
    `scene_kept`: the ablated picture's best-scoring scene is still the picture's scene, i.e. the
    object went and the scene stayed.
    """
    main = localizer.bundles[0]
    bank = TrialBank(dataset, main.preprocessor)
    rows = test_set(bank, "averaged")
    picture_cases, embedding_cases = _Drops(), _Drops()
    below_objects: list[bool] = []
    scene_kept: list[bool] = []
    scenes = [c for c in key.concepts if c in SCENES]
    text_cache: dict[str, torch.Tensor] = {}

    def text(concept: str) -> torch.Tensor:
        if concept not in text_cache:
            text_cache[concept] = F.normalize(torch.as_tensor(vision.text_embeddings([concept]))[0].float(), dim=0)
        return text_cache[concept]

    def similarities(volume: np.ndarray, concepts: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
        """Cosine of each concept's text with (the reconstruction's CLIP embedding, ẑ_c), and the
        reconstruction's best-scoring scene."""
        with torch.no_grad():
            output = main.model(main.tokens(main.preprocessor(volume[None])))
        picture = reconstructor(output.clip, output.vae, "", beta=beta, seed=seed, steps=steps)
        seen = F.normalize(torch.as_tensor(vision.image_embeddings(picture))[0].float(), dim=0)
        decoded = F.normalize(output.clip[0].float().cpu(), dim=0)
        best_scene = max(scenes, key=lambda c: float(seen @ text(c)))
        return (np.array([float(seen @ text(c)) for c in concepts]), np.array([float(decoded @ text(c)) for c in concepts]),
                best_scene)  # fmt: skip

    for row in range(len(rows)):
        if picture_cases.n >= max_cases:
            break
        subject = bank.subjects[int(rows.subject[row])]
        concepts = key.concepts_in(int(rows.nsd_id[row]))
        if len(concepts) < 2:
            continue
        mask = dataset.nsdgeneral(subject) > 0
        volume = native_volume(bank, subject, rows.voxels[row])
        picture_before, embedding_before, _ = similarities(volume, concepts)
        for index, concept in enumerate(concepts[:-1]):  # remove each object (the scene stays)
            if picture_cases.n >= max_cases:
                break
            heatmap = localizer.localize(volume, concept, subject=subject, affine=dataset.affine(subject), mask=mask)
            ablated, _ = ablate(volume, [heatmap], fraction)
            picture_after, embedding_after, best_scene = similarities(ablated, concepts)
            picture_cases.add(picture_after - picture_before, index)
            embedding_cases.add(embedding_after - embedding_before, index)
            other_objects = np.delete(picture_after[:-1], index)  # the last concept is the scene
            if len(other_objects):
                below_objects.append(bool(picture_after[index] < other_objects.min()))
            scene_kept.append(best_scene == concepts[-1])
    log(f"ablation: {picture_cases.n} cases")
    return {**picture_cases.summary(), "n": picture_cases.n, "fraction": fraction, "beta": beta,
            "embedding": embedding_cases.summary(),
            "removed_below_objects": float(np.mean(below_objects)) if below_objects else None, "objects_n": len(below_objects),
            "scene_kept": float(np.mean(scene_kept)) if scene_kept else None}  # fmt: skip


class _Drops:
    """Per ablation case: did the removed concept's similarity fall more than every other's, and by how much."""

    def __init__(self):
        self.below: list[bool] = []
        self.removed: list[float] = []
        self.others: list[float] = []

    @property
    def n(self) -> int:
        return len(self.below)

    def add(self, change: np.ndarray, removed: int) -> None:
        others = np.delete(change, removed)
        self.below.append(bool(change[removed] < others.min()))
        self.removed.append(float(-change[removed]))
        self.others.append(float(-others.mean()))

    def summary(self) -> dict:
        if not self.below:
            return {"removed_below_others": None, "drop_removed": None, "drop_others": None}
        return {"removed_below_others": float(np.mean(self.below)), "drop_removed": float(np.mean(self.removed)),
                "drop_others": float(np.mean(self.others)),
                "case_sd": {"removed_below_others": spread_over_cases(self.below), "drop_removed": spread_over_cases(self.removed),
                            "drop_others": spread_over_cases(self.others)}}  # fmt: skip
