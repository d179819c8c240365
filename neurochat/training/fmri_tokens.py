"""The LLM's fMRI input, cached: the frozen extractor's penultimate hidden states per recording (Sec. 3.3).

They are deterministic, so they are computed once (on the GPU when there is one, in batches) into a
float16 memory map and reused by every LLM stage. A recording is a key (subject, trial, ...): train
samples read their one trial, test samples the mean of their repetitions' voxels ("averaged") or the
first one ("single"), as the protocols of App. C.1.

The cache is resumable (rows are written in batches and counted in a progress file, so an interrupted
run continues where it stopped) and reusable (a cache holding more recordings than asked for serves
the subset; one that lacks some is extended, keeping the rows it has). `python -m train.prepare`
fills it for every recording of a dataset, ahead of training.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from neurochat.errors import ConfigError, DataError

PROTOCOLS = ("averaged", "single")
EXTRACT_BATCH = 32  # recordings per extractor forward pass
_META = ".json"  # beside ARRAY.npy: its keys, shape, extractor and how many rows are done


@dataclass
class FMRIFeatures:
    """Penultimate hidden states per fMRI source: `array[index[key]]` is (T, D) for key
    (subject, trials...)."""

    array: np.ndarray  # (M, T, D) float16 (a memory map for NSD-sized runs)
    index: dict[tuple, int]

    def batch(self, keys: Sequence[tuple]) -> torch.Tensor:
        rows = [self.index[key] for key in keys]
        return torch.from_numpy(np.asarray(self.array[rows], dtype=np.float32))  # (B, T, D)


def fmri_key(sample: dict, protocol: str = "averaged") -> tuple:
    """Which trials make a sample's fMRI input: train samples their one trial; test samples all
    their repetitions (averaged) or the first (single), App. C.1."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={protocol!r}: choose 'averaged' or 'single'")
    trials = list(sample["trials"])
    if not trials:
        raise DataError(f"sample {sample.get('id')!r} points at no fMRI trial")
    if protocol == "single":
        trials = trials[:1]
    return (sample["subject"], *sorted(int(t) for t in trials))


def recording_keys(dataset, subjects: Sequence[str]) -> list[tuple]:
    """Every recording an LLM stage may read: each training trial, and each shared (test) image averaged
    over its repetitions and as its first one."""
    keys = []
    for subject in subjects:
        table = dataset.trials(subject)
        keys += [(subject, int(t)) for t in table.trial[~table.shared].tolist()]
        for nsd_id in table.test_images.tolist():
            trials = table.trials_of_image(nsd_id).tolist()
            keys += [(subject, *sorted(int(t) for t in trials)), (subject, int(trials[0]))]
    return list(dict.fromkeys(keys))


def identify_extractor(bundle, folder: str | Path) -> dict:
    """How brainllm.json records the extractor checkpoint in `folder` (`extractor_facts`); also set as the
    bundle's `checkpoint` id, which names its token cache."""
    from neurochat.models.brainllm import extractor_facts

    facts = extractor_facts(folder, bundle.config)
    bundle.info["checkpoint"] = f"{facts['folder']}#{facts['sha256_16']}"
    return facts


def token_cache_path(bundle, dataset_root: str | Path, cache: str | Path | None = None) -> Path:
    """Where the fMRI tokens of one extractor checkpoint on one dataset live (under the cache folder)."""
    from neurochat.paths import cache_dir

    digest = hashlib.sha256(f"{bundle.info.get('checkpoint', '')}|{Path(dataset_root).resolve()}".encode()).hexdigest()
    return Path(cache or cache_dir()) / "fmri-tokens" / f"{digest[:20]}.npy"


@torch.no_grad()
def extract_fmri(bundle, bank, keys: Sequence[tuple], cache_path: str | Path | None = None, *,
                 progress: bool = False, batch_size: int = EXTRACT_BATCH) -> FMRIFeatures:  # fmt: skip
    """Penultimate hidden states of the frozen extractor for each key (subject, trial, ...): the
    trials' support voxels are averaged, made into tokens and encoded on the extractor's device.

    With `cache_path` (a .npy memory map) the states are kept there: a finished cache with every key
    is reused as it is; an interrupted one with the same keys resumes; one that lacks keys is
    rewritten for the union, copying the rows it already has.
    """
    keys = list(dict.fromkeys(tuple(k) for k in keys))
    subjects = list(dict.fromkeys(k[0] for k in keys))
    keys.sort(key=lambda k: subjects.index(k[0]))  # stable: each subject's keys together, batched as they come
    model = bundle.model.eval()
    row_shape = (1 + model.config.n_tokens, model.config.hidden)
    extractor = bundle.info.get("checkpoint", "")
    if cache_path is None:
        array = np.empty((len(keys), *row_shape), dtype=np.float16)
        _encode_rows(bundle, bank, keys, array, {k: i for i, k in enumerate(keys)}, 0, progress, batch_size)
        return FMRIFeatures(array, {k: i for i, k in enumerate(keys)})

    cache_path = Path(cache_path)
    meta_path = cache_path.with_suffix(_META)
    stored = json.loads(meta_path.read_text()) if meta_path.exists() and cache_path.exists() else None
    if stored and (stored["extractor"] != extractor or tuple(stored["shape"][1:]) != row_shape):
        stored = None  # another extractor's tokens: start over
    old_keys = [tuple(k) for k in stored["keys"]] if stored else []
    if stored:
        stored.setdefault("done", len(old_keys))  # a cache written whole, before progress was counted
    if stored and stored["done"] == len(old_keys) and set(keys) <= set(old_keys):
        return FMRIFeatures(np.load(cache_path, mmap_mode="r"), {k: i for i, k in enumerate(old_keys)})
    if stored and old_keys == keys:  # the same run, interrupted: continue after its last finished batch
        array, done = np.load(cache_path, mmap_mode="r+"), stored["done"]
    else:
        complete = stored is not None and stored["done"] == len(old_keys)
        union = old_keys + [k for k in keys if k not in set(old_keys)] if complete else keys
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        fresh = cache_path.with_name(cache_path.stem + ".partial.npy")
        array = np.lib.format.open_memmap(fresh, mode="w+", dtype=np.float16, shape=(len(union), *row_shape))
        if complete:
            array[: len(old_keys)] = np.load(cache_path, mmap_mode="r")
        array.flush()
        fresh.replace(cache_path)
        array = np.load(cache_path, mmap_mode="r+")
        keys, done = union, len(old_keys) if complete else 0
    index = {k: i for i, k in enumerate(keys)}

    def save_progress(rows_done: int) -> None:
        array.flush()
        meta = {"keys": [list(k) for k in keys], "shape": [len(keys), *row_shape], "extractor": extractor, "done": rows_done}
        partial = meta_path.with_name(meta_path.name + ".tmp")
        partial.write_text(json.dumps(meta))
        partial.replace(meta_path)  # atomic: an interruption leaves the previous count

    save_progress(done)
    _encode_rows(bundle, bank, keys, array, index, done, progress, batch_size, save_progress)
    return FMRIFeatures(np.load(cache_path, mmap_mode="r"), index)


def _encode_rows(bundle, bank, keys, array, index, done, progress, batch_size, after_batch=None) -> None:
    """Encode keys[done:] in batches of one subject each, writing their rows of `array`."""
    parameter = next(bundle.model.parameters())
    bar = tqdm(total=len(keys), initial=done, desc="fMRI tokens", unit="recording", disable=not progress)
    start = done
    while start < len(keys):
        subject = keys[start][0]
        if subject not in bank.subjects:
            raise DataError(f"samples name subject {subject!r}, which the trial bank does not hold ({bank.subjects})")
        chunk = [keys[start]]
        while len(chunk) < batch_size and start + len(chunk) < len(keys) and keys[start + len(chunk)][0] == subject:
            chunk.append(keys[start + len(chunk)])
        voxels = np.stack([bank.voxels[subject][bank.rows_of(subject, np.array(k[1:]))].mean(axis=0) for k in chunk])
        tokens = bundle.tokens(bank.tokens(subject, voxels).float()).to(parameter.device, parameter.dtype)  # (b, N, r³)
        hidden = bundle.model(tokens).penultimate.float().cpu().numpy()  # (b, 1 + N, D)
        if not np.isfinite(hidden).all() or np.abs(hidden).max() > np.finfo(np.float16).max:
            raise DataError(f"the extractor's hidden states for {subject} are not finite in float16; check the checkpoint")
        array[[index[k] for k in chunk]] = hidden.astype(np.float16)
        start += len(chunk)
        bar.update(len(chunk))
        if after_batch is not None:
            after_batch(start)
    bar.close()
