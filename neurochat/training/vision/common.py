"""What the demo's CLIP and VAE trainings share: the pool pictures, the record of a run, the time budget."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from neurochat.sim.pool import POOL_FIRST_ID, pool_scenes, render_images


@dataclass
class PoolPictures:
    """Pool pictures with their captions and concepts."""

    image_ids: list[int]
    images: np.ndarray  # uint8 (N, S, S, 3)
    captions: list[list[str]]  # five per picture
    concepts: list[list[str]]  # object names, then the scene word

    @classmethod
    def render(cls, seed: int, n: int, size: int, first: int = POOL_FIRST_ID) -> "PoolPictures":
        """Pool pictures `first` .. `first + n - 1` of the world with `seed`, rendered at `size`."""
        scenes = pool_scenes(seed, n, first=first)
        return cls([s.image_id for s in scenes], render_images(scenes, size), [s.captions for s in scenes], [s.concepts for s in scenes])

    def __len__(self) -> int:
        return len(self.image_ids)


@dataclass
class TrainingRun:
    """What one training loop did."""

    steps: int
    wall_seconds: float
    final_loss: float  # mean over the last `LOSS_WINDOW` steps
    losses: list[float] = field(repr=False)


LOSS_WINDOW = 50  # steps averaged for the reported final loss


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


def out_of_time(accelerator, started: float, max_seconds: float | None) -> bool:
    """Whether the time budget is spent; every process takes the same decision (or DDP would hang)."""
    if max_seconds is None:
        return False
    spent = torch.tensor(float(time.perf_counter() - started > max_seconds), device=accelerator.device)
    return bool(accelerator.reduce(spent, reduction="sum").item() > 0)
