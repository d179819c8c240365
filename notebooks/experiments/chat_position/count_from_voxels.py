"""How many of the picture's largest object are there (1, 2, 3 or more), read from the voxels themselves? A ridge
per subject, trained on its own-image trials, scored on its averaged test recordings.

    python notebooks/experiments/chat_position/count_from_voxels.py
"""

import numpy as np

from neurochat.data import TrialBank, test_set
from neurochat.language.facts import facts_from_scene
from neurochat.models.bundle import load_main_models
from neurochat.nsd import NSDDataset
from neurochat.paths import ensure_simnsd
from neurochat.presets import get_preset
from neurochat.sim.truth import AnswerKey

COUNTS = [1, 2, 3]  # instances of the largest object (3: three or more)
main, _, _ = load_main_models(get_preset("demo", None))
dataset = NSDDataset(ensure_simnsd("demo"))
key = AnswerKey(dataset.root)
bank = TrialBank(dataset, main.preprocessor)
recordings = test_set(bank, "averaged")


def count_class(nsd_id) -> int:
    return COUNTS.index(min(3, facts_from_scene(key.scenes[int(nsd_id)]).objects[0].count))  # objects: largest first


for ridge in (1e2, 1e3, 1e4):
    right = []
    for s, subject in enumerate(bank.subjects):
        table = bank.tables[subject]
        train = np.flatnonzero(~np.asarray(table.shared))
        x = bank.voxels[subject][bank.rows_of(subject, table.trial[train])].astype(np.float64)
        y = np.eye(len(COUNTS))[[count_class(i) for i in table.nsd_id[train]]]
        mean, std = x.mean(0), x.std(0) + 1e-6
        x = (x - mean) / std
        weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ (y - y.mean(0)))
        rows = np.flatnonzero(recordings.subject == s)
        x_test = (np.asarray([recordings.voxels[r] for r in rows], dtype=np.float64) - mean) / std
        right.append(np.mean((x_test @ weights).argmax(1) == np.array([count_class(i) for i in recordings.nsd_id[rows]])))
    print(f"ridge λ = {ridge:g}: the largest object's count from the voxels, {np.mean(right):.1%} of the test recordings")
counts = np.array([count_class(i) for i in recordings.nsd_id])
print(f"the most common count is {np.bincount(counts).max() / len(counts):.1%} of the test recordings")
