"""The ceiling of linear identification in the demo CLIP's space: a ridge from each picture's true
content (per object: sqrt of its area, its position times that, its count; the scene; optionally an 8x8
thumbnail) to its CLIP image embedding, trained on N pool-like pictures, identifying 100 held-out ones.
No brain is involved: a linear reader of any simulated cortex that encodes only this content can do no better.

    python notebooks/experiments/simnsd_calibration/feature_ceiling.py
"""
import numpy as np, torch, dataclasses
torch.set_num_threads(1)
from neurochat.sim.config import SIZES
from neurochat.sim.generate import Design
from neurochat.sim.render import render_scene
from neurochat.sim.scenes import sample_scene
from neurochat.sim.concepts import OBJECTS, SCENES
from neurochat.sim.calibrate import _ridge_predict
from neurochat.models.vision import VisionEncoders
from neurochat.presets import get_preset
p=get_preset("demo"); vision=VisionEncoders(p.clip_dir,p.unclip_dir)
n_train_list=[800,1600,3200]
scenes=[sample_scene(0,i) for i in range(100+3200)]
images=np.stack([render_scene(s,64) for s in scenes])
clip=np.asarray(vision.image_embeddings(images),np.float64); clip/=np.linalg.norm(clip,axis=1,keepdims=True)
names=[o.name for o in OBJECTS]
def feats(s, img):
    f=[]
    for n in names:
        o=[o for o in s.objects if o.name==n]
        a=np.sqrt(o[0].area_fraction) if o else 0.0
        cx,cy=o[0].center if o else (0.5,0.5)
        f+=[a, a*(cx-0.5)*2, a*(cy-0.5)*2, (o[0].count-1) if o else 0]
    f+= [float(s.scene==sc) for sc in SCENES]
    return np.array(f)
F=np.stack([feats(s,i) for s,i in zip(scenes,images)])
small=images.reshape(len(images),8,8,8,8,3).mean(axis=(2,4)).reshape(len(images),-1)/255.
test=np.arange(100)
for n in n_train_list:
    tr=np.arange(100,100+n)
    for name,X in (("objects+scene",F),("+8x8 pixels",np.hstack([F*3,small])),):
        X=(X-X[tr].mean(0))/(X[tr].std(0)+1e-6)
        best=0
        for lam in (1,10,100):
            pr=_ridge_predict(X[tr],clip[tr],X[test],lam); pr/=np.linalg.norm(pr,axis=1,keepdims=True)
            best=max(best,np.mean((pr@clip[test].T).argmax(1)==test))
        print(n,name,best)
