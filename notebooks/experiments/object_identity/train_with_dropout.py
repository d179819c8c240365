"""Experiment: the r = 7 ViT3D with another dropout.  python notebooks/experiments/object_identity/train_with_dropout.py P EPOCHS OUT"""
import sys, dataclasses
from neurochat.models import extractor as mx
p = float(sys.argv[1]); epochs = sys.argv[2]; out = sys.argv[3]
_dc = mx.demo_config
mx.demo_config = lambda *a, **k: dataclasses.replace(_dc(*a, **k), dropout=p)
import train.extractor
train.extractor.main(["--preset", "demo", "--weights", "checkpoints/demo", "--nsd-root", ".cache/simnsd-demo-seed0",
                      "--no-progress", "--threads", "2", "--patch-size", "7", "--epochs", epochs, "--out", out])
