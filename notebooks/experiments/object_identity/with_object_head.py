"""Experiment: run a script or module with the object head of train_with_object_term.py on FMRIExtractor, so its checkpoints load.

    python notebooks/experiments/object_identity/with_object_head.py SCRIPT_OR_MODULE ARGS...
"""
import sys, runpy
from neurochat.models import extractor as mx
from neurochat.sim.truth import AnswerKey
from neurochat.paths import dataset_root
key = AnswerKey(dataset_root("demo", None))
n = len({o.name for s in key.scenes.values() for o in s.objects})
_init = mx.FMRIExtractor.__init__
def init(self, config, coords):
    _init(self, config, coords); self.object_head = mx._head(config, n)
mx.FMRIExtractor.__init__ = init
target = sys.argv[1]; sys.argv = sys.argv[1:]
if target.endswith(".py"):
    runpy.run_path(target, run_name="__main__")
else:
    runpy.run_module(target, run_name="__main__", alter_sys=True)
