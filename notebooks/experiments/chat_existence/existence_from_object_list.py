"""Existence answers read off the fMRI-LLM's own object list, beside what it answers when asked directly.

    python notebooks/experiments/chat_existence/existence_from_object_list.py [--weights BUNDLE]

For every averaged test recording the LLM is asked "What objects are in the picture?" once; each
existence question of `neurochat.evaluate dialogue` (same cases, same seed) is then answered "yes" when
that list names the object. Prints the shares right for present and absent objects.
"""

import argparse

import numpy as np

from neurochat.data import TrialBank, test_set
from neurochat.evaluate.dialogue import Case, ask_cases, dialogue_cases, llm_asker
from neurochat.evaluate.recon import predict_features, select_rows
from neurochat.language import load_facts
from neurochat.language.answers import asserted_mentions
from neurochat.models.bundle import load_main_models
from neurochat.nsd import NSDDataset
from neurochat.paths import ensure_simnsd
from neurochat.presets import get_preset

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--weights", help="demo bundle folder (default: checkpoints/demo)")
args = parser.parse_args()

main, _, brainllm = load_main_models(get_preset("demo", args.weights))
dataset = NSDDataset(ensure_simnsd("demo"))
bank = TrialBank(dataset, main.preprocessor)
recordings = test_set(bank, "averaged")
rows = select_rows(recordings, None)
facts_by_id, _, vocabulary = load_facts(dataset, {int(i) for i in recordings.nsd_id[rows]})
rows = np.array([r for r in rows if int(recordings.nsd_id[r]) in facts_by_id])
_, _, fmri = predict_features(main, bank, recordings, rows)
facts = [facts_by_id[int(i)] for i in recordings.nsd_id[rows]]

listing = [Case("objects", row, ("What objects are in the picture?",)) for row in range(len(facts))]
named = [set(asserted_mentions(turns[-1], vocabulary)) for turns in ask_cases(listing, llm_asker(brainllm, fmri))]
right: dict[str, list[bool]] = {"existence.present": [], "existence.absent": []}
for case in dialogue_cases(facts, vocabulary, seed=0):
    if case.kind in right:
        listed = case.target in named[case.row]
        right[case.kind].append(listed if case.kind == "existence.present" else not listed)
for kind, hits in right.items():
    print(f"{kind}: {np.mean(hits):.1%} of {len(hits)} right when read off the object list")
