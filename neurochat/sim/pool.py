"""The picture pool: SimNSD scenes without fMRI, for training the demo's vision and text models.

NSD's images come from COCO, and the paper's CLIP, VAE and UnCLIP were trained on other pictures.
Likewise the demo's models train on pool scenes, whose 73k-style ids start after every id a SimNSD
tree can use, so no test picture is ever seen in training.
"""

from __future__ import annotations

import numpy as np

from neurochat.sim.render import render_scene
from neurochat.sim.scenes import Scene, sample_scene

POOL_FIRST_ID = 73_000  # SimNSD trees use ids 0 .. n_images-1, far below this


def pool_scenes(seed: int, n: int, first: int = POOL_FIRST_ID) -> list[Scene]:
    """`n` pool scenes of the world with `seed`, ids `first`, `first`+1, ..."""
    return [sample_scene(seed, image_id) for image_id in range(first, first + n)]


def render_images(scenes: list[Scene], size: int) -> np.ndarray:
    """uint8 (n, size, size, 3) pictures of `scenes`."""
    return np.stack([render_scene(scene, size) for scene in scenes]) if scenes else np.zeros((0, size, size, 3), np.uint8)
