"""The ceiling of an object-drawing decoder: zero-shot object hit of the demo CLIP on held-out
pool pictures, on their 64 px versions and on their VAE round trips."""
import numpy as np, torch
from neurochat.models.vision import VisionEncoders
from neurochat.presets import get_preset
from neurochat.sim.concepts import OBJECTS
from neurochat.sim.pool import pool_scenes, render_images

torch.set_num_threads(1)
p = get_preset("demo")
enc = VisionEncoders.from_preset(p)
scenes = pool_scenes(0, 200, first=90_000)
imgs = render_images(scenes, 64)
names = torch.nn.functional.normalize(enc.text_embeddings([o.name for o in OBJECTS]), dim=-1)
def hit(images):
    e = torch.nn.functional.normalize(enc.image_embeddings(images), dim=-1)
    best = (e @ names.T).argmax(1)
    return np.mean([OBJECTS[k].name in [o.name for o in s.objects] for k, s in zip(best.tolist(), scenes)])
print("stimuli 64px", hit(imgs))
rt = enc.decode_latents(enc.encode_latents(imgs))
print("vae round trip", hit(rt))
