"""How many of the present objects each of the LLM's answers names, and the union of any three.

    python notebooks/experiments/chat_existence/objects_named_by_each_prompt.py

For every averaged test recording the fMRI-LLM is asked six things (greedy, as `neurochat.evaluate
dialogue` asks): its object list, "What can you see", "Which objects", a detailed description, the
reconstruction prompt and a brief caption. Each existence question of the dialogue evaluation (same
cases, same seed) is then answered "yes" when that answer (or the union of three) names the object.
Prints the shares right for present and absent objects.
"""

import itertools

import numpy as np

from neurochat.data import TrialBank, test_set
from neurochat.evaluate.dialogue import Case, ask_cases, dialogue_cases, llm_asker
from neurochat.evaluate.recon import predict_features, select_rows
from neurochat.language import RECONSTRUCTION_INSTRUCTIONS, load_facts
from neurochat.language.answers import asserted_mentions
from neurochat.models.bundle import load_main_models
from neurochat.nsd import NSDDataset
from neurochat.paths import ensure_simnsd
from neurochat.presets import get_preset

PROMPTS = {"objects": "What objects are in the picture?", "see": "What can you see in this image?",
           "which": "Which objects do you see?", "detailed": "Describe the following image in detail.",
           "reconstruction": RECONSTRUCTION_INSTRUCTIONS[0], "brief": "Describe the image concisely."}  # fmt: skip

main, _, brainllm = load_main_models(get_preset("demo", None))
dataset = NSDDataset(ensure_simnsd("demo"))
bank = TrialBank(dataset, main.preprocessor)
recordings = test_set(bank, "averaged")
rows = select_rows(recordings, None)
facts_by_id, _, vocabulary = load_facts(dataset, {int(i) for i in recordings.nsd_id[rows]})
rows = np.array([r for r in rows if int(recordings.nsd_id[r]) in facts_by_id])
_, _, fmri = predict_features(main, bank, recordings, rows)
facts = [facts_by_id[int(i)] for i in recordings.nsd_id[rows]]
named = {}
for name, prompt in PROMPTS.items():
    answers = ask_cases([Case("objects", row, (prompt,)) for row in range(len(facts))], llm_asker(brainllm, fmri, max_new_tokens=100))
    named[name] = [set(asserted_mentions(turns[-1], vocabulary)) for turns in answers]
cases = [case for case in dialogue_cases(facts, vocabulary, seed=0) if case.kind.startswith("existence.")]


def shares(lists) -> tuple[float, float]:
    right = {"existence.present": [], "existence.absent": []}
    for case in cases:
        listed = case.target in lists[case.row]
        right[case.kind].append(listed if case.kind == "existence.present" else not listed)
    return float(np.mean(right["existence.present"])), float(np.mean(right["existence.absent"]))


for name in PROMPTS:
    print(f"{name}: present {shares(named[name])[0]:.1%}, absent {shares(named[name])[1]:.1%}")
unions = {combo: shares([set().union(*(named[k][i] for k in combo)) for i in range(len(facts))])
          for combo in itertools.combinations(PROMPTS, 3)}  # fmt: skip
best = max(unions, key=lambda combo: unions[combo][0])
print(f"best union of three ({' + '.join(best)}): present {unions[best][0]:.1%}, absent {unions[best][1]:.1%}")
