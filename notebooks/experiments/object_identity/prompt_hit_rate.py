"""Experiment: how often the reconstruction prompts of one (extractor, BrainLLM) pair name a true object, with each
concept once and plain greedy.  python notebooks/experiments/object_identity/prompt_hit_rate.py EXTRACTOR BRAINLLM [THREADS]
"""
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 2)
from neurochat.nsd import NSDDataset
from neurochat.paths import dataset_root
from neurochat.models.extractor import load_extractor
from neurochat.models.brainllm import load_brainllm
from neurochat.sim.truth import AnswerKey
from neurochat.data import TrialBank, test_set
from neurochat.evaluate.recon import predict_features, llm_prompts
from neurochat.evaluate.caption import names

root = dataset_root("demo", None); ds = NSDDataset(root); key = AnswerKey(root)
bundle = load_extractor(sys.argv[1]); bundle.model.eval()
llm = load_brainllm(sys.argv[2])
bank = TrialBank(ds, bundle.preprocessor); ts = test_set(bank, "averaged")
with torch.no_grad():
    _, _, fmri = predict_features(bundle, bank, ts, np.arange(len(ts)))
objs = [[o.name for o in key.scenes[int(i)].objects] for i in ts.nsd_id]
for distinct in ("each", None):
    kw = {} if distinct else {"distinct_concepts": None}
    p = llm_prompts(llm, fmri, **kw)
    print("hit", distinct, np.mean([any(names(a, o) for o in os_) for a, os_ in zip(p, objs)]), p[:2], flush=True)
