"""Concept ablation: zero the voxels where a concept lives, and look again (paper Sec. 4.4, Fig. 8).

The top q% of a concept's heatmap inside nsdgeneral are set to 0 (baseline) in the subject's native
betas; the recording is encoded again and reconstructed again with the same seed, β and prompt.
Several concepts can be removed at once (the union of their voxels). The original is not touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurochat.errors import ConfigError
from neurochat.localize import Heatmap

DEFAULT_FRACTION = 0.10  # q = 10% of nsdgeneral voxels per concept


@dataclass(frozen=True)
class Ablation:
    """What an ablated picture was drawn from: the zeroed voxels and the prompt the LLM wrote without them."""

    concepts: tuple[str, ...]  # the removed concepts, sorted
    zeroed: np.ndarray  # bool (X, Y, Z) in the recording's native grid (`Explorer.features(state).affine`)
    prompt: str  # the LLM's reconstruction prompt for the ablated recording ("" before any reconstruction was asked)

    @property
    def voxel_count(self) -> int:
        return int(self.zeroed.sum())


def ablation_mask(heatmaps: list[Heatmap], fraction: float = DEFAULT_FRACTION) -> np.ndarray:
    """bool (X, Y, Z): the union over concepts of each heatmap's top `fraction` of voxels."""
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(f"q = {fraction * 100:g}% of voxels: choose a share in (0, 100]%")
    if not heatmaps:
        raise ConfigError("no concept to remove")
    mask = np.zeros(heatmaps[0].native.shape, bool)
    for heatmap in heatmaps:
        mask |= heatmap.top_voxels(fraction)
    return mask


def ablate(volume: np.ndarray, heatmaps: list[Heatmap], fraction: float = DEFAULT_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """(a copy of `volume` with the concepts' voxels set to 0, the bool mask of those voxels)."""
    mask = ablation_mask(heatmaps, fraction)
    ablated = np.array(volume, dtype=np.float32, copy=True)
    ablated[mask] = 0.0
    return ablated, mask
