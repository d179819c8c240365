"""How much object identity the LLM's fMRI tokens carry: a linear probe, to read the LLM's numbers by.

A multi-label logistic regression from an extractor's penultimate hidden states (every token,
flattened and z-scored: exactly what the LLM's projector reads) to the objects in the picture. It is
fitted on the training trials the LLM learns from (one trial per sample) and scored on the averaged
test recordings: the share whose most probable object is in the picture (top-1), and whose two most
probable objects include one that is (top-2), a linear reader's version of the reconstruction-prompt
hit rate. SimNSD only: the objects come from its answer key.
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
