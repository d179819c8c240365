"""The Natural Scenes Dataset on disk (real NSD or the SimNSD phantom): `NSDDataset`, and `read_beta_map`
for one trial's volume brought as a NIfTI file."""

from neurochat.nsd.betas import BETA_SCALE, read_beta_map
from neurochat.nsd.dataset import NSDDataset
from neurochat.nsd.design import ExpDesign, TrialTable

__all__ = ["NSDDataset", "ExpDesign", "TrialTable", "BETA_SCALE", "read_beta_map"]
