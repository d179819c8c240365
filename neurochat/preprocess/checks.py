"""Validation and conversion at the preprocessor's boundary: every refusal names the likely mistake."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from neurochat.errors import DataError

# NSD's native grids differ from subj01's by about 10 % per axis. A resize by more than this factor
# on an axis is almost certainly a wrong axis order, e.g. an (X, Y, Z, trials) betas array passed
# where (trials, X, Y, Z) was meant, so we refuse it instead of returning silent garbage.
MAX_RESIZE_FACTOR = 4.0


def is_positive_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value > 0


def check_native_shape(native_shape: Any) -> tuple[int, int, int]:
    shape = tuple(native_shape) if isinstance(native_shape, (tuple, list, torch.Size)) else None
    if shape is None or len(shape) != 3 or not all(is_positive_int(n) for n in shape):
        raise DataError(f"a native grid must be three positive integers (X, Y, Z); got {native_shape!r}")
    return tuple(int(n) for n in shape)


def check_resize_factor(native_shape: tuple[int, ...], common_grid: tuple[int, ...], what: str) -> None:
    for axis, (n_in, n_out) in enumerate(zip(native_shape, common_grid)):
        factor = max(n_in / n_out, n_out / n_in)
        if factor > MAX_RESIZE_FACTOR:
            raise DataError(
                f"{what} {tuple(native_shape)} differs from the common grid {tuple(common_grid)} by "
                f"{factor:.1f}× along axis {axis} (at most {MAX_RESIZE_FACTOR:g}× is accepted). Check the "
                f"axis order: volumes are (X, Y, Z) or (B, X, Y, Z); NSD betas files are (X, Y, Z, trials) "
                f"in NIfTI and (trials, Z, Y, X) in HDF5."
            )


def as_numpy(array: Any, what: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    if isinstance(array, np.ndarray):
        return array
    raise DataError(f"{what} must be a numpy array or a torch tensor; got {type(array).__name__}")


def as_float_tensor(array: Any, what: str) -> torch.Tensor:
    """numpy or torch → torch float64 if the input is float64, else float32; non-floats rejected."""
    if isinstance(array, np.ndarray):
        if not np.issubdtype(array.dtype, np.floating):
            raise DataError(_not_float_message(what, array.dtype))
        if not array.flags.writeable or any(stride < 0 for stride in array.strides):
            array = array.copy()  # torch can share only writable arrays with non-negative strides
        array = torch.from_numpy(array)
    elif not isinstance(array, torch.Tensor):
        raise DataError(f"{what} must be a numpy array or a torch tensor; got {type(array).__name__}")
    if not array.is_floating_point():
        raise DataError(_not_float_message(what, array.dtype))
    return array if array.dtype in (torch.float32, torch.float64) else array.float()


def _not_float_message(what: str, dtype: Any) -> str:
    return (
        f"{what} must be floating point; got dtype {dtype}. NSD betas are stored as int16 = 300 × "
        f"percent signal change: convert with betas.astype(np.float32) / 300."
    )

