"""How much object identity the LLM's fMRI tokens carry: a linear probe, to read the LLM's numbers by.

A multi-label logistic regression from an extractor's penultimate hidden states (every token,
flattened and z-scored: exactly what the LLM's projector reads) to the objects in the picture. It is
fitted on the training trials the LLM learns from (one trial per sample) and scored on the averaged
test recordings: the share whose most probable object is in the picture (top-1), and whose two most
probable objects include one that is (top-2), a linear reader's version of the reconstruction-prompt
hit rate. `voxel_references` reads the same objects from the voxels themselves, directly and through
CLIP's space, to show where object identity is lost. SimNSD only: the objects come from its answer key.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from neurochat.data import TrialBank, test_set
from neurochat.errors import DataError


def object_probe(dataset, bundle, *, steps: int = 300, lr: float = 1e-3, weight_decay: float = 0.1, seed: int = 0) -> dict:
    """{"top1", "top2", "train_top1", "n_train", "n_test", "objects"} for one extractor `bundle`."""
    from neurochat.evaluate.recon import predict_features
    from neurochat.language import build_extension
    from neurochat.sim.truth import AnswerKey
    from neurochat.training.llm import extract_fmri, fmri_key

    if not AnswerKey.exists(dataset.root):
        raise DataError(f"{dataset.root} has no SimNSD answer key: the object probe needs the true objects of each picture")
    key = AnswerKey(dataset.root)
    scenes, concepts = key.scenes, key.concepts
    column = {name: i for i, name in enumerate(concepts)}

    def labels(nsd_ids) -> torch.Tensor:
        y = torch.zeros(len(nsd_ids), len(concepts))
        for row, nsd_id in enumerate(nsd_ids):
            for obj in scenes[int(nsd_id)].objects:
                y[row, column[obj.name]] = 1
        return y

    train, _, _ = build_extension(dataset, seed=seed, tasks=["brief"])  # one sample per training trial
    picture = {fmri_key(s): s["nsd_id"] for s in train}
    keys = sorted(picture)
    bank = TrialBank(dataset, bundle.preprocessor)
    x_train = torch.from_numpy(np.asarray(extract_fmri(bundle, bank, keys, None, progress=False).array, dtype=np.float32))
    ts = test_set(bank, "averaged")
    with torch.no_grad():
        _, _, x_test = predict_features(bundle, bank, ts, np.arange(len(ts)))
    y_train, y_test = labels([picture[k] for k in keys]), labels(ts.nsd_id)

    x_train, x_test = x_train.flatten(1), x_test.float().flatten(1)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    torch.manual_seed(seed)
    probe = torch.nn.Linear(x_train.shape[1], len(concepts))
    optimizer = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):  # full batch: a few thousand rows
        optimizer.zero_grad()
        F.binary_cross_entropy_with_logits(probe(x_train), y_train).backward()
        optimizer.step()
    with torch.no_grad():
        top = probe(x_test).topk(min(2, len(concepts)), dim=1).indices
        train_top = probe(x_train).argmax(1, keepdim=True)
    return {"top1": float(y_test.gather(1, top[:, :1]).mean()),
            "top2": float((y_test.gather(1, top).sum(1) > 0).float().mean()),
            "train_top1": float(y_train.gather(1, train_top).mean()),
            "n_train": len(keys), "n_test": len(ts), "objects": len(concepts)}  # fmt: skip


def voxel_references(dataset, bank: TrialBank, vision, *, ridge: float = 1e3) -> dict:
    """What a per-subject linear reader of the voxels themselves gets: the numbers to read the
    extractor's by. Two ridge regressions per subject from the z-scored support voxels of the
    training trials (one row per trial), scored on the averaged test recordings as `object_probe`:

    - "objects": to the picture's objects directly (top-1 / top-2 of the predicted scores);
    - "clip_zero_shot": to the picture's CLIP image embedding (the extractor's alignment target,
      Eq. 2), then zero-shot: the objects whose CLIP text embeddings ("a photo of a <name>") lie
      nearest the prediction. The gap between the two is object identity that CLIP-space
      regression loses.

    Returns {"objects": {"top1", "top2"}, "clip_zero_shot": {"top1", "top2"}, "n_test", "ridge"}.
    """
    from neurochat.sim.truth import AnswerKey

    if not AnswerKey.exists(dataset.root):
        raise DataError(f"{dataset.root} has no SimNSD answer key: the voxel references need the true objects of each picture")
    key = AnswerKey(dataset.root)
    objects = sorted({obj.name for scene in key.scenes.values() for obj in scene.objects})
    text = F.normalize(torch.as_tensor(vision.text_embeddings([f"a photo of a {name}" for name in objects])).float(), dim=-1)
    ts = test_set(bank, "averaged")
    hits = {"objects": [], "clip_zero_shot": []}  # per test row: (top-1 hit, top-2 hit)

    def labels(nsd_ids) -> np.ndarray:
        return np.array([[obj in {o.name for o in key.scenes[int(i)].objects} for obj in objects] for i in nsd_ids], np.float64)

    def score(predicted: np.ndarray, truth: np.ndarray) -> list[tuple[bool, bool]]:
        top = np.argsort(-predicted, axis=1)[:, :2]
        return [(bool(t[k[0]]), bool(t[k].any())) for k, t in zip(top, truth)]

    for s, subject in enumerate(bank.subjects):
        table = bank.tables[subject]
        train = ~table.shared  # the subject's own pictures; the shared ones are the test set
        x = bank.voxels[subject][train].astype(np.float64)
        mean, std = x.mean(0), x.std(0) + 1e-6
        x = (x - mean) / std
        rows = ts.subject == s
        x_test = (np.stack([v for v, keep in zip(ts.voxels, rows) if keep]) - mean) / std
        truth = labels(ts.nsd_id[rows])
        # kernel ridge (trials ≪ voxels): W = Xᵀ (X Xᵀ + λI)⁻¹ (Y − Ȳ)
        solve = np.linalg.cholesky(x @ x.T + ridge * np.eye(len(x)))

        def fit_predict(y: np.ndarray) -> np.ndarray:
            """The ridge's prediction of y − ȳ for the test recordings."""
            dual = np.linalg.solve(solve.T, np.linalg.solve(solve, y - y.mean(0)))
            return x_test @ (x.T @ dual)

        # objects ranked by evidence above their base rate (the shrunk ridge would otherwise mostly
        # rank them by how common they are)
        hits["objects"] += score(fit_predict(labels(table.nsd_id[train])), truth)
        pictures, which = np.unique(table.nsd_id[train], return_inverse=True)
        clip = F.normalize(torch.as_tensor(vision.image_embeddings(dataset.images(pictures))).float(), dim=-1).numpy()
        target = clip[which].astype(np.float64)
        predicted = F.normalize(torch.as_tensor(fit_predict(target) + target.mean(0)).float(), dim=-1)
        hits["clip_zero_shot"] += score((predicted @ text.T).numpy(), truth)
    result = {name: {"top1": float(np.mean([h[0] for h in rows])), "top2": float(np.mean([h[1] for h in rows]))}
              for name, rows in hits.items()}  # fmt: skip
    return {**result, "n_test": len(ts), "ridge": ridge}
