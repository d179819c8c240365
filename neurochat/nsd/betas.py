"""Reading NSD's single-trial betas from `.nii.gz` or `.hdf5`, in one axis order and one unit.

NSD stores betas as int16 = 300 x percent signal change (NSD_FORMAT.md):
- `.nii.gz`: nibabel gives (X, Y, Z, trials); the gzip stream must be decompressed as a whole,
  so a session is decompressed once and kept in a small LRU cache;
- `.hdf5`: dataset `betas` shaped (trials, Z, Y, X); uncompressed in NSD (chunked per trial in
  SimNSD), so single trials are read directly.
Both come out as float32 (X, Y, Z) volumes in percent signal change; so does one trial's volume
brought as a NIfTI file (`read_beta_map`, the explorer's upload).
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


def _from_stored_units(stored: np.ndarray) -> np.ndarray:
    """NSD's stored units (BETA_SCALE x percent signal change) -> float32 percent signal change."""
    return stored.astype(np.float32) / np.float32(BETA_SCALE)


def to_percent_signal_change(stored: np.ndarray, path: Path, trials: np.ndarray) -> np.ndarray:
    """int16 betas -> float32 percent signal change; refuses non-finite values instead of hiding them."""
    values = _from_stored_units(stored)
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


def volume_count(path: str | Path) -> int:
    """How many volumes a NIfTI file holds (1 for a 3D file; the last axis of a 4D one), from its header."""
    try:
        shape = nib.load(Path(path)).shape
    except Exception as error:
        raise DataError(f"{Path(path).name} is not a readable NIfTI file ({error.__class__.__name__}); "
                        "upload a .nii or .nii.gz") from error  # fmt: skip
    return shape[3] if len(shape) == 4 else 1


def read_beta_map(path: str | Path, volume_index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One trial's beta map from a NIfTI file someone brings: (float32 (X, Y, Z) percent signal change, affine).

    Integer files follow NSD's convention (BETA_SCALE x percent signal change, as in the session
    files); float files are taken as percent signal change already (integers are the only sign of
    NSD's scaling). A trailing axis of length 1 is dropped (one trial saved as 4-D); of a 4D file of
    several trials, `volume_index` (0-based, along the last axis) picks one. Non-finite, empty and
    constant volumes are refused. The file's own affine is kept, so heatmaps written back land where
    the volume came from.
    """
    path = Path(path)
    try:
        image = nib.load(path)
        if len(image.shape) == 4 and image.shape[-1] > 1 and volume_index is not None:
            if not 0 <= volume_index < image.shape[-1]:
                raise DataError(f"{path.name} holds {image.shape[-1]} volumes {tuple(image.shape)}: pick a volume "
                                f"from 0 to {image.shape[-1] - 1}, not {volume_index}.")  # fmt: skip
            data = np.asanyarray(image.dataobj[..., volume_index])  # only that volume is read
        else:
            data = np.asanyarray(image.dataobj)  # (X, Y, Z) or (X, Y, Z, 1)
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{path.name} is not a readable NIfTI file ({error.__class__.__name__}); "
                        "upload a .nii or .nii.gz") from error  # fmt: skip
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 4:
        raise DataError(f"This volume has 4 dimensions {tuple(data.shape)}: {data.shape[-1]} volumes; pick one of them "
                        f"(0 to {data.shape[-1] - 1}) as the trial's 3D beta map.")  # fmt: skip
    if data.ndim != 3:
        raise DataError(f"This volume has {data.ndim} dimensions {tuple(data.shape)}; upload one trial's 3D beta map.")
    volume = _from_stored_units(data) if np.issubdtype(data.dtype, np.integer) else data.astype(np.float32)
    bad = ~np.isfinite(volume)
    if bad.any():
        raise DataError(f"{path.name} holds {int(bad.sum()):,} NaN or infinite values; export the betas without "
                        "them (NeuroChat does not guess missing values).")  # fmt: skip
    if volume.min() == volume.max():  # an empty volume or a mask: nothing to decode, so no answer may seem confident
        raise DataError(f"{path.name} holds the same value ({volume.flat[0]:g}) in all {volume.size:,} voxels of its "
                        f"{volume.shape} grid: there is no brain activity to decode, so NeuroChat gives no caption, "
                        "picture or map. Upload one trial's beta map, not an empty volume or a mask.")  # fmt: skip
    return volume, np.asarray(image.affine, np.float64)


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
