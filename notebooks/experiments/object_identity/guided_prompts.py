"""Experiment: fMRI-guided decoding of the reconstruction prompt, log p(·|brain) + g·(log p(·|brain) − log p(·|mean training brain)).

    python notebooks/experiments/object_identity/guided_prompts.py EXTRACTOR BRAINLLM G [G ...]
"""
import sys, numpy as np, torch
torch.set_num_threads(2)
from neurochat.nsd import NSDDataset
from neurochat.paths import dataset_root
from neurochat.models.extractor import load_extractor
from neurochat.models.brainllm import load_brainllm, NamesEachConceptOnce
from neurochat.sim.truth import AnswerKey
from neurochat.data import TrialBank, test_set
from neurochat.evaluate.recon import predict_features, RECONSTRUCTION_INSTRUCTION, CONCEPT_NAMES
from neurochat.evaluate.caption import names
from neurochat.language import build_extension
from neurochat.training.llm import extract_fmri, fmri_key
from collections import Counter
root = dataset_root("demo", None); ds = NSDDataset(root); key = AnswerKey(root)
bundle = load_extractor(sys.argv[1]); bundle.model.eval()
llm = load_brainllm(sys.argv[2]); llm.lm.eval()
bank = TrialBank(ds, bundle.preprocessor); ts = test_set(bank, "averaged")
with torch.no_grad():
    _, _, fmri = predict_features(bundle, bank, ts, np.arange(len(ts)))
train, _, _ = build_extension(ds, seed=0, tasks=["brief"])
keys = sorted({fmri_key(s) for s in train})[::8]
null = torch.from_numpy(np.asarray(extract_fmri(bundle, bank, keys, None, progress=False).array, np.float32)).mean(0)
objs = [[o.name for o in key.scenes[int(i)].objects] for i in ts.nsd_id]
emb = llm.lm.get_input_embeddings()

@torch.no_grad()
def decode(f, g, max_new=60):
    e_c, m, _, _ = llm.prepare(f, RECONSTRUCTION_INSTRUCTION, max_new)
    e_u, _, _, _ = llm.prepare(null.expand_as(f), RECONSTRUCTION_INSTRUCTION, max_new)
    proc = NamesEachConceptOnce(llm.tokenizer, CONCEPT_NAMES)
    B = len(f); gen = torch.zeros(B, 0, dtype=torch.long); done = torch.zeros(B, dtype=torch.bool)
    for _ in range(max_new):
        ge = emb(gen); mm = torch.cat([m, torch.ones(B, gen.shape[1], dtype=m.dtype)], 1)
        lc = llm.lm(inputs_embeds=torch.cat([e_c, ge], 1), attention_mask=mm).logits[:, -1].log_softmax(-1)
        s = lc
        if g:
            lu = llm.lm(inputs_embeds=torch.cat([e_u, ge], 1), attention_mask=mm).logits[:, -1].log_softmax(-1)
            s = lc + g * (lc - lu)
        s[:, llm.image_token_id] = -1e9
        s = proc(gen, s)
        nxt = s.argmax(-1)
        nxt[done] = llm.pad_token_id
        gen = torch.cat([gen, nxt[:, None]], 1)
        done |= torch.isin(nxt, torch.tensor(list(llm.stop_token_ids)))
        if done.all(): break
    out = []
    for row in gen.tolist():
        ids = []
        for t in row:
            if t in llm.stop_token_ids or t == llm.pad_token_id: break
            ids.append(t)
        out.append(llm.tokenizer.decode(ids, skip_special_tokens=True).strip())
    return out

for g in [float(x) for x in sys.argv[3:]]:
    p = []
    for s in range(0, len(fmri), 50): p += decode(fmri[s:s+50], g)
    hit = np.mean([any(names(a, o) for o in os_) for a, os_ in zip(p, objs)])
    first = Counter(next((c for c in CONCEPT_NAMES if names(a, c)), None) for a in p).most_common(4)
    print(f"g={g}: hit {hit:.4f}  most named {first}  e.g. {p[0]!r}", flush=True)
