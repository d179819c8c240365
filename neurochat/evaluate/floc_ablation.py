"""Zeroing a functional-localizer ROI vs as many random voxels: does the ROI's concept leave the picture?

For each averaged test recording whose picture holds a concept of an ROI's family (an animal for
floc-bodies, the scene for floc-places), the recording is reconstructed three times with the same
seed: as it is, with the ROI's voxels set to zero, and with as many random nsdgeneral voxels set to
zero. The concept's score in each picture is the cosine between the picture's CLIP embedding and the
concept's text; its drop after the ROI's ablation is compared with its drop after the random one.
Unlike the concept-map ablation of `neurochat.evaluate.localize`, nothing here comes from our maps:
the voxels are the localizer's.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neurochat.data import TrialBank, test_set
from neurochat.evaluate.decoder import picture_objects
from neurochat.evaluate.localize import native_volume
from neurochat.floc import FLOC_ROIS, read_floc_roi


def roi_ablation(dataset, bundle, reconstructor, vision, vocabulary, *, max_cases: int = 40, beta: float = 0.93,
                 steps: int = 10, seed: int = 0, log=print) -> dict:  # fmt: skip
    """{roi: {"concepts", "n", "drop_roi", "drop_random", "roi_beats_random", "voxels"}} for every ROI on disk."""
    scenes = _scenes(dataset)
    bank = TrialBank(dataset, bundle.preprocessor)
    rows = test_set(bank, "averaged")
    objects = picture_objects(dataset, rows.nsd_id)
    rng = np.random.default_rng(seed)
    texts: dict[str, torch.Tensor] = {}

    def score(volume: np.ndarray, concept: str) -> float:
        if concept not in texts:
            texts[concept] = F.normalize(torch.as_tensor(vision.text_embeddings([concept]))[0].float(), dim=0)
        with torch.no_grad():
            output = bundle.model(bundle.tokens(bundle.preprocessor(volume[None])))
        picture = reconstructor(output.clip, output.vae, "", beta=beta, seed=seed, steps=steps)
        return float(F.normalize(torch.as_tensor(vision.image_embeddings(picture))[0].float(), dim=0) @ texts[concept])

    results = {}
    for roi in FLOC_ROIS:
        family = {c for c in roi.concepts if c in vocabulary}
        drops: dict[str, list[float]] = {"roi": [], "random": []}
        sizes = []
        for row in range(len(rows)):
            if len(drops["roi"]) >= max_cases:
                break
            subject = bank.subjects[int(rows.subject[row])]
            labels = read_floc_roi(dataset.root, subject, roi.name)
            present = sorted((objects[row] | {scenes.get(int(rows.nsd_id[row]))}) & family)
            if labels is None or not present:
                continue
            mask = dataset.nsdgeneral(subject) > 0
            inside = (labels > 0) & mask
            volume = native_volume(bank, subject, rows.voxels[row])
            concept = present[0]
            before = score(volume, concept)
            random = np.zeros(mask.size, bool)
            random[rng.choice(np.flatnonzero(mask), size=int(inside.sum()), replace=False)] = True
            for name, zeroed in (("roi", inside), ("random", random.reshape(mask.shape))):
                drops[name].append(before - score(np.where(zeroed, 0.0, volume).astype(np.float32), concept))
            sizes.append(int(inside.sum()))
        if drops["roi"]:
            roi_drop, random_drop = np.array(drops["roi"]), np.array(drops["random"])
            results[roi.name] = {"concepts": sorted(family), "n": len(roi_drop), "drop_roi": float(roi_drop.mean()),
                                 "drop_random": float(random_drop.mean()),
                                 "roi_beats_random": float(np.mean(roi_drop > random_drop)), "voxels": float(np.mean(sizes))}  # fmt: skip
            r = results[roi.name]
            log(f"{roi.name} zeroed ({r['voxels']:.0f} voxels on average), {r['n']} recordings: its concept's score falls "
                f"by {r['drop_roi']:.4f}, vs {r['drop_random']:.4f} for as many random voxels; more in "
                f"{r['roi_beats_random']:.0%} of the recordings")  # fmt: skip
    return results


def _scenes(dataset) -> dict[int, str]:
    """Each picture's scene where the tree knows it (SimNSD's answer key), else nothing."""
    from neurochat.sim.truth import AnswerKey

    if not AnswerKey.exists(dataset.root):
        return {}
    return {nsd_id: scene.scene for nsd_id, scene in AnswerKey(dataset.root).scenes.items()}
