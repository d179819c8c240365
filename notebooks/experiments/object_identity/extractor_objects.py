"""Experiment: test CLIP and VAE MSE, zero-shot object naming from the predicted CLIP embedding, and the
object probe, for one extractor folder.  python notebooks/experiments/object_identity/extractor_objects.py FOLDER [THREADS]
"""
import sys, numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
from neurochat.nsd import NSDDataset
from neurochat.presets import get_preset
from neurochat.paths import dataset_root
from neurochat.models.vision import VisionEncoders
from neurochat.models.extractor import load_extractor
from neurochat.sim.truth import AnswerKey
from neurochat.data import TrialBank, test_set
from neurochat.evaluate.recon import predict_features
from neurochat.evaluate.probe import object_probe
from neurochat.targets import dataset_targets
root = dataset_root("demo", None); ds = NSDDataset(root)
vision = VisionEncoders.from_preset(get_preset("demo"))
key = AnswerKey(root)
objects = sorted({o.name for s in key.scenes.values() for o in s.objects})
text = F.normalize(torch.as_tensor(vision.text_embeddings([f"a photo of a {n}" for n in objects])).float(), dim=-1)
bundle = load_extractor(sys.argv[1]); bundle.model.eval()
bank = TrialBank(ds, bundle.preprocessor); ts = test_set(bank, "averaged")
with torch.no_grad():
    clip, vae, _ = predict_features(bundle, bank, ts, np.arange(len(ts)))
tg = dataset_targets(ds, vision); ct, vt = tg.batch(torch.as_tensor(ts.nsd_id))
print("test clip mse", F.mse_loss(clip, ct).item(), "vae mse", F.mse_loss(vae, vt).item())
truth = np.array([[n in {o.name for o in key.scenes[int(i)].objects} for n in objects] for i in ts.nsd_id])
s = (F.normalize(clip.float(), dim=-1) @ text.T).numpy()
def sc(s):
    top = np.argsort(-s, 1)[:, :2]
    return np.mean([t[k[0]] for k, t in zip(top, truth)]), np.mean([t[k].any() for k, t in zip(top, truth)])
print("zero-shot", sc(s), "base-rate corrected", sc(s - s.mean(0)))
print("probe", object_probe(ds, bundle))
