"""Alignment targets of the extractor: CLIP image embedding z_c and VAE latent z_v of each stimulus.

Eq. 2 aligns the extractor to E_c(x) and E_v(x) of the picture x the person saw. They depend only
on the picture, so they are computed once per dataset and vision models and cached on disk.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neurochat.errors import DataError
from neurochat.nsd.dataset import NSDDataset
from neurochat.paths import cache_dir


@dataclass
class ImageTargets:
    """z_c (n, clip_dim) and z_v (n, C, h, w) of the pictures `nsd_ids`, float32."""

    nsd_ids: np.ndarray  # (n,) sorted
    clip: np.ndarray
    vae: np.ndarray

    def rows(self, nsd_ids) -> np.ndarray:
        ids = np.asarray(nsd_ids).reshape(-1)
        rows = np.searchsorted(self.nsd_ids, ids)
        rows = np.minimum(rows, len(self.nsd_ids) - 1)
        missing = self.nsd_ids[rows] != ids
        if missing.any():
            raise DataError(f"no targets for 73k ids {ids[missing][:5].tolist()}: recompute the targets for this dataset")
        return rows

    def batch(self, nsd_ids: torch.Tensor, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(clip, vae) targets of a batch of 73k ids, as tensors."""
        rows = self.rows(nsd_ids.cpu().numpy())
        return torch.from_numpy(self.clip[rows]).to(device), torch.from_numpy(self.vae[rows]).to(device)


def compute_targets(dataset: NSDDataset, vision, nsd_ids, batch_size: int = 64) -> ImageTargets:
    """Embed the stimuli `nsd_ids` with `vision` (a `VisionEncoders`)."""
    ids = np.unique(np.asarray(nsd_ids, dtype=np.int64))
    clips, vaes = [], []
    for start in range(0, len(ids), batch_size):
        images = dataset.images(ids[start : start + batch_size])  # (b, H, W, 3) uint8
        clips.append(np.asarray(vision.image_embeddings(images), dtype=np.float32))
        vaes.append(np.asarray(vision.encode_latents(images), dtype=np.float32))
    return ImageTargets(ids, np.concatenate(clips), np.concatenate(vaes))


def dataset_targets(dataset: NSDDataset, vision, cache: bool = True) -> ImageTargets:
    """Targets of every picture shown to the dataset's subjects, cached per dataset and vision models."""
    ids = np.unique(np.concatenate([dataset.trials(s).nsd_id for s in dataset.subjects]))
    key = hashlib.sha256()
    key.update(str(dataset.root.resolve()).encode())
    key.update(ids.tobytes())
    stimuli = dataset.path("nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")
    if stimuli.exists():
        key.update(str(stimuli.stat().st_size).encode())
    key.update(vision_fingerprint(vision).encode())
    path = cache_dir() / "targets" / f"{key.hexdigest()[:20]}.npz"
    if cache and path.exists():
        with np.load(path) as stored:
            return ImageTargets(stored["nsd_ids"], stored["clip"], stored["vae"])
    targets = compute_targets(dataset, vision, ids)
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, nsd_ids=targets.nsd_ids, clip=targets.clip, vae=targets.vae)
    return targets


def vision_fingerprint(vision) -> str:
    """A hash of the vision models' weight files, so cached targets follow the weights."""
    digest = hashlib.sha256()
    for folder in (Path(vision.clip_dir), Path(vision.unclip_dir) / "vae"):
        for path in sorted(folder.rglob("*.safetensors")) + sorted(folder.rglob("*.json")):
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
