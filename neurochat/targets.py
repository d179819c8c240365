"""Alignment targets of the extractor: CLIP image embedding z_c and VAE latent z_v of each stimulus.

Eq. 2 aligns the extractor to E_c(x) and E_v(x) of the picture x the person saw. They depend only
on the picture, so they are computed once per dataset and vision models and cached on disk: in
batches on the vision models' device (a GPU when there is one), with a progress bar and its ETA,
into memory-mapped arrays whose finished rows are counted, so an interrupted run resumes. NSD's
~37,000 pictures at the paper's 768 px make 5.5 GB of float32 targets; they are read from the
memory map, not held in RAM.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from neurochat.errors import DataError
from neurochat.nsd.dataset import NSDDataset
from neurochat.paths import cache_dir

TARGETS_BATCH = 64  # pictures read from the stimulus file and embedded per step
_PROGRESS = "progress.json"  # how many rows of clip.npy and vae.npy are finished


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
        return torch.from_numpy(np.asarray(self.clip[rows])).to(device), torch.from_numpy(np.asarray(self.vae[rows])).to(device)


def compute_targets(dataset: NSDDataset, vision, nsd_ids, batch_size: int = TARGETS_BATCH, *,
                    folder: str | Path | None = None, progress: bool = False) -> ImageTargets:  # fmt: skip
    """Embed the stimuli `nsd_ids` with `vision` (a `VisionEncoders`), `batch_size` pictures at a time.

    With `folder`, the targets are written there as memory maps (clip.npy, vae.npy, nsd_ids.npy) and
    the finished rows counted after every batch; a folder holding an unfinished run of the same ids
    and shapes continues from its last finished batch.
    """
    ids = np.unique(np.asarray(nsd_ids, dtype=np.int64))
    shapes = {"clip": (len(ids), vision.clip_dim), "vae": (len(ids), *vision.latent_shape)}
    if folder is None:
        arrays, done = {name: np.empty(shape, np.float32) for name, shape in shapes.items()}, 0
    else:
        arrays, done = _open_partial(Path(folder), ids, shapes)
    bar = tqdm(total=len(ids), initial=done, desc="CLIP + VAE targets", unit="picture", disable=not progress)
    for start in range(done, len(ids), batch_size):
        images = dataset.images(ids[start : start + batch_size])  # (b, H, W, 3) uint8
        arrays["clip"][start : start + len(images)] = np.asarray(vision.image_embeddings(images), dtype=np.float32)
        arrays["vae"][start : start + len(images)] = np.asarray(vision.encode_latents(images), dtype=np.float32)
        if folder is not None:
            _save_progress(Path(folder), arrays, start + len(images), len(ids))
        bar.update(len(images))
    bar.close()
    return ImageTargets(ids, arrays["clip"], arrays["vae"])


def _open_partial(folder: Path, ids: np.ndarray, shapes: dict) -> tuple[dict, int]:
    """The memory maps of a run into `folder`, and how many rows are finished (0 for a new run)."""
    folder.mkdir(parents=True, exist_ok=True)
    progress = folder / _PROGRESS
    same = (progress.exists() and (folder / "nsd_ids.npy").exists() and np.array_equal(np.load(folder / "nsd_ids.npy"), ids)
            and json.loads(progress.read_text()).get("shapes") == {k: list(v) for k, v in shapes.items()})  # fmt: skip
    if same:
        done = json.loads(progress.read_text())["done"]
        return {name: np.load(folder / f"{name}.npy", mmap_mode="r+") for name in shapes}, done
    np.save(folder / "nsd_ids.npy", ids)
    arrays = {name: np.lib.format.open_memmap(folder / f"{name}.npy", mode="w+", dtype=np.float32, shape=shape)
              for name, shape in shapes.items()}  # fmt: skip
    _save_progress(folder, arrays, 0, len(ids))
    return arrays, 0


def _save_progress(folder: Path, arrays: dict, done: int, total: int) -> None:
    for array in arrays.values():
        array.flush()
    record = {"done": done, "total": total, "shapes": {name: list(array.shape) for name, array in arrays.items()}}
    partial = folder / (_PROGRESS + ".tmp")
    partial.write_text(json.dumps(record))
    partial.replace(folder / _PROGRESS)  # atomic: an interruption leaves the previous count


def dataset_targets(dataset: NSDDataset, vision, cache: bool = True, *, batch_size: int = TARGETS_BATCH,
                    progress: bool = False) -> ImageTargets:  # fmt: skip
    """Targets of every picture shown to the dataset's subjects, cached per dataset and vision models."""
    ids = _shown(dataset)
    if not cache:
        return compute_targets(dataset, vision, ids, batch_size, progress=progress)
    return cached_targets(dataset, vision) or compute_targets(dataset, vision, ids, batch_size,
                                                              folder=_cache_folder(dataset, vision, ids), progress=progress)


def cached_targets(dataset: NSDDataset, vision) -> ImageTargets | None:
    """The finished cached targets of the dataset and vision models, or None."""
    ids = _shown(dataset)
    whole = _cache_folder(dataset, vision, ids, whole=True)  # written in one piece by earlier versions
    if whole.exists():
        with np.load(whole) as stored:
            if tuple(stored["vae"].shape[1:]) == tuple(vision.latent_shape):
                return ImageTargets(stored["nsd_ids"], stored["clip"], stored["vae"])
    path = _cache_folder(dataset, vision, ids)
    progress_file = path / _PROGRESS
    if progress_file.exists() and (record := json.loads(progress_file.read_text()))["done"] == record["total"]:
        return ImageTargets(np.load(path / "nsd_ids.npy"), np.load(path / "clip.npy", mmap_mode="r"),
                            np.load(path / "vae.npy", mmap_mode="r"))  # fmt: skip
    return None


def _shown(dataset: NSDDataset) -> np.ndarray:
    return np.unique(np.concatenate([dataset.trials(s).nsd_id for s in dataset.subjects]))


def _cache_folder(dataset: NSDDataset, vision, ids: np.ndarray, whole: bool = False) -> Path:
    key = hashlib.sha256()
    key.update(str(dataset.root.resolve()).encode())
    key.update(ids.tobytes())
    stimuli = dataset.path("nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5")
    if stimuli.exists():
        key.update(str(stimuli.stat().st_size).encode())
    key.update(vision_fingerprint(vision).encode())
    name = key.hexdigest()[:20]
    return cache_dir() / "targets" / (f"{name}.npz" if whole else f"{name}-{vision.image_size}px")


def vision_fingerprint(vision) -> str:
    """A hash of the vision models' weight files, so cached targets follow the weights."""
    digest = hashlib.sha256()
    for folder in (Path(vision.clip_dir), Path(vision.unclip_dir) / "vae"):
        for path in sorted(folder.rglob("*.safetensors")) + sorted(folder.rglob("*.json")):
            digest.update(path.name.encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
