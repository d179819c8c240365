"""Reading NSD's single-trial betas from `.nii.gz` or `.hdf5`, in one axis order and one unit.

NSD stores betas as int16 = 300 x percent signal change (NSD_FORMAT.md):
- `.nii.gz`: nibabel gives (X, Y, Z, trials); the gzip stream must be decompressed as a whole,
  so a session is decompressed once and kept in a small LRU cache;
- `.hdf5`: dataset `betas` shaped (trials, Z, Y, X); uncompressed in NSD (chunked per trial in
  SimNSD), so single trials are read directly.
Both come out as float32 (X, Y, Z) volumes in percent signal change.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

from neurochat.errors import DataError

BETA_SCALE = 300.0  # int16 units per percent signal change


class SessionFile:
    """One session's beta file. Reads trials as float32 (X, Y, Z) in percent signal change."""

    def __init__(self, path: Path, fmt: str):
        self.path = path
        self.format = fmt
        self._h5: h5py.File | None = None
        self.shape, self.n_trials, self.dtype = self._read_header()

    def _read_header(self) -> tuple[tuple[int, int, int], int, np.dtype]:
        try:
            if self.format == "hdf5":
                dataset = self._dataset()
                n, z, y, x = _expect_ndim(dataset.shape, 4, self.path, "(trials, Z, Y, X)")
                return (x, y, z), n, dataset.dtype
            image = nib.load(self.path)
            x, y, z, n = _expect_ndim(image.shape, 4, self.path, "(X, Y, Z, trials)")
            return (x, y, z), n, image.get_data_dtype()
        except DataError:
            raise
        except Exception as error:
            raise DataError(f"{self.path} cannot be read as NSD betas ({error}); download it again") from error

    def _dataset(self) -> h5py.Dataset:
        if self._h5 is None:
            try:
                self._h5 = h5py.File(self.path, "r")
            except OSError as error:
                raise DataError(f"{self.path} is not a readable HDF5 file ({error}); download it again") from error
        if "betas" not in self._h5:
            raise DataError(f"{self.path} has no dataset 'betas' (found {list(self._h5)}); is it an NSD beta file?")
        return self._h5["betas"]

    def read_all(self) -> np.ndarray:
        """Every trial, as stored (int16 for NSD), shaped (trials, X, Y, Z)."""
        try:
            if self.format == "hdf5":
                data = self._dataset()[()]  # (n, Z, Y, X)
                return np.ascontiguousarray(data.transpose(0, 3, 2, 1))
            data = np.asanyarray(nib.load(self.path).dataobj)  # (X, Y, Z, n)
            return np.ascontiguousarray(np.moveaxis(data, -1, 0))
        except (EOFError, zlib.error, OSError, ValueError) as error:
            raise DataError(
                f"{self.path} is damaged or truncated ({error.__class__.__name__}: {error}); download it again"
            ) from error

    def read_trials(self, within: np.ndarray) -> np.ndarray:
        """Trials at 0-based positions `within` this session, as stored, (n, X, Y, Z). HDF5 only."""
        dataset = self._dataset()
        unique, inverse = np.unique(within, return_inverse=True)  # h5py wants increasing indices
        try:
            data = dataset[unique.tolist()]  # (u, Z, Y, X)
        except OSError as error:
            raise DataError(f"{self.path} is damaged ({error}); download it again") from error
        return np.ascontiguousarray(data.transpose(0, 3, 2, 1))[inverse]

    def close(self) -> None:
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None


def _expect_ndim(shape, ndim, path, expected) -> tuple[int, ...]:
    if len(shape) != ndim:
        raise DataError(f"{path} holds an array of shape {tuple(shape)}; NSD betas are {ndim}-D {expected}")
    return tuple(int(n) for n in shape)


def to_percent_signal_change(stored: np.ndarray, path: Path, trials: np.ndarray) -> np.ndarray:
    """int16 betas -> float32 percent signal change; refuses non-finite values instead of hiding them."""
    values = stored.astype(np.float32) / np.float32(BETA_SCALE)
    if np.issubdtype(stored.dtype, np.floating):
        bad = ~np.isfinite(values)
        if bad.any():
            per_trial = bad.reshape(len(values), -1).sum(axis=1)
            worst = int(np.argmax(per_trial))
            raise DataError(
                f"{path}: trial {int(trials[worst])} has {int(per_trial[worst])} NaN or infinite betas "
                f"({int(bad.sum())} in the {len(values)} trials read). NSD betas are finite int16; "
                "fix or re-export the file rather than letting NeuroChat guess values"
            )
    return values


class SessionCache:
    """Keeps the last few decompressed `.nii.gz` sessions so trials are not decompressed again."""

    def __init__(self, capacity: int = 2):
        self.capacity = max(1, capacity)
        self._data: OrderedDict[Path, np.ndarray] = OrderedDict()

    def get(self, session: SessionFile) -> np.ndarray:
        if session.path in self._data:
            self._data.move_to_end(session.path)
            return self._data[session.path]
        data = session.read_all()
        self._data[session.path] = data
        while len(self._data) > self.capacity:
            self._data.popitem(last=False)
        return data

    def clear(self) -> None:
        self._data.clear()
