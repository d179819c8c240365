"""Is the side of the picture's largest object in the LLM's fMRI tokens? A linear probe (left / center / right),
trained on the training trials, scored on the averaged test recordings.

    python notebooks/experiments/chat_position/side_from_tokens.py
"""

import numpy as np
import torch
import torch.nn.functional as F

from neurochat.data import TrialBank, test_set
from neurochat.evaluate.recon import predict_features
from neurochat.language import build_extension
from neurochat.language.facts import facts_from_scene
from neurochat.models.bundle import load_main_models
from neurochat.nsd import NSDDataset
from neurochat.paths import ensure_simnsd
from neurochat.presets import get_preset
from neurochat.sim.truth import AnswerKey
from neurochat.training.llm import extract_fmri, fmri_key

SIDES = ["left", "center", "right"]
main, _, _ = load_main_models(get_preset("demo", None))
dataset = NSDDataset(ensure_simnsd("demo"))
key = AnswerKey(dataset.root)


def side(nsd_id) -> int:
    return SIDES.index(facts_from_scene(key.scenes[int(nsd_id)]).objects[0].horizontal)  # objects: largest first


train, _, _ = build_extension(dataset, seed=0, tasks=["brief"])  # one sample per training trial
picture = {fmri_key(sample): sample["nsd_id"] for sample in train}
keys = sorted(picture)
bank = TrialBank(dataset, main.preprocessor)
x_train = torch.from_numpy(np.asarray(extract_fmri(main, bank, keys, None, progress=False).array, dtype=np.float32)).flatten(1)
recordings = test_set(bank, "averaged")
with torch.no_grad():
    _, _, x_test = predict_features(main, bank, recordings, np.arange(len(recordings)))
x_test = x_test.float().flatten(1)
y_train = torch.tensor([side(picture[k]) for k in keys])
y_test = torch.tensor([side(i) for i in recordings.nsd_id])
mean, std = x_train.mean(0), x_train.std(0) + 1e-6
x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
torch.manual_seed(0)
probe = torch.nn.Linear(x_train.shape[1], len(SIDES))
optimizer = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=0.1)
for _ in range(300):  # full batch
    optimizer.zero_grad()
    F.cross_entropy(probe(x_train), y_train).backward()
    optimizer.step()
with torch.no_grad():
    test = (probe(x_test).argmax(1) == y_test).float().mean().item()
    fit = (probe(x_train).argmax(1) == y_train).float().mean().item()
majority = np.bincount(y_test.numpy()).max() / len(y_test)
print(f"the largest object's side from the fMRI tokens: {test:.1%} of the test recordings ({fit:.1%} of the training "
      f"trials); the most common side is {majority:.1%}")
