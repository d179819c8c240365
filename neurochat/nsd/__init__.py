"""The Natural Scenes Dataset on disk (real NSD or the SimNSD phantom): `NSDDataset`."""

from neurochat.nsd.dataset import NSDDataset
from neurochat.nsd.design import ExpDesign, TrialTable

__all__ = ["NSDDataset", "ExpDesign", "TrialTable"]
