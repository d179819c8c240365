"""Experiment (not part of the product): train the r = 7 ViT3D with Eq. 2 plus w · BCE of an object head
on h₀ (the CLS of the last layer) against the picture's SimNSD objects.

    python notebooks/experiments/object_identity/train_with_object_term.py W EPOCHS OUT

The object head is patched onto `FMRIExtractor` here, so the checkpoint loads only through
`with_object_head.py`.
"""

import sys

import torch
import torch.nn.functional as F

import neurochat.training.extractor as training
from neurochat.models import extractor as models
from neurochat.paths import dataset_root
from neurochat.sim.truth import AnswerKey
from neurochat.targets import ImageTargets

weight, epochs, out = float(sys.argv[1]), sys.argv[2], sys.argv[3]
key = AnswerKey(dataset_root("demo", None))
objects = sorted({o.name for scene in key.scenes.values() for o in scene.objects})
column = {name: i for i, name in enumerate(objects)}
state = {}  # the batch's object labels and the CLS the CLIP head reads, passed to the loss

plain_batch = ImageTargets.batch


def batch_with_labels(self, nsd_ids, device=None):
    labels = torch.zeros(len(nsd_ids), len(objects))
    for row, nsd_id in enumerate(nsd_ids.tolist()):
        for obj in key.scenes[int(nsd_id)].objects:
            labels[row, column[obj.name]] = 1
    state["labels"] = labels
    return plain_batch(self, nsd_ids, device)


plain_init = models.FMRIExtractor.__init__


def init_with_object_head(self, config, coords):
    plain_init(self, config, coords)
    self.object_head = models._head(config, len(objects))
    self.clip_head.register_forward_pre_hook(lambda module, args: state.__setitem__("cls", args[0]))
    state["head"] = self.object_head


plain_loss = training.alignment_loss


def loss_with_object_term(output, clip_target, vae_target, alpha):
    total, clip_term, vae_term = plain_loss(output, clip_target, vae_target, alpha)
    object_term = F.binary_cross_entropy_with_logits(state["head"](state["cls"]), state["labels"])
    return total + weight * object_term, clip_term, vae_term


ImageTargets.batch = batch_with_labels
models.FMRIExtractor.__init__ = init_with_object_head
training.alignment_loss = loss_with_object_term

import train.extractor  # noqa: E402

train.extractor.main(["--preset", "demo", "--weights", "checkpoints/demo", "--nsd-root", ".cache/simnsd-demo-seed0",
                      "--no-progress", "--threads", "2", "--patch-size", "7", "--epochs", epochs, "--out", out])
