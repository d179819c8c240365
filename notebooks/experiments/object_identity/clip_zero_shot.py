"""Experiment: the demo CLIP names the objects of the true test pictures zero-shot.  python notebooks/experiments/object_identity/clip_zero_shot.py"""
import numpy as np, torch, torch.nn.functional as F
from neurochat.nsd import NSDDataset
from neurochat.presets import get_preset
from neurochat.paths import dataset_root
from neurochat.models.vision import VisionEncoders
from neurochat.sim.truth import AnswerKey
root = dataset_root("demo", None); ds = NSDDataset(root)
vision = VisionEncoders.from_preset(get_preset("demo"))
key = AnswerKey(root)
objects = sorted({o.name for s in key.scenes.values() for o in s.objects})
text = F.normalize(torch.as_tensor(vision.text_embeddings([f"a photo of a {n}" for n in objects])).float(), dim=-1)
t = ds.trials("subj01"); ids = np.unique(t.nsd_id[t.shared])
img = F.normalize(torch.as_tensor(vision.image_embeddings(ds.images(ids))).float(), dim=-1)
s = (img @ text.T).numpy(); top = np.argsort(-s,1)[:,:2]
truth = np.array([[n in {o.name for o in key.scenes[int(i)].objects} for n in objects] for i in ids])
print("n", len(ids), "top1", np.mean([tr[k[0]] for k,tr in zip(top,truth)]), "top2", np.mean([tr[k].any() for k,tr in zip(top,truth)]))
print("objects per scene", np.mean(truth.sum(1)))
