"""Trilinear interpolation weights, one axis at a time, corner-aligned as `scipy.ndimage.zoom(order=1)`."""

from __future__ import annotations

import numpy as np

from neurochat.errors import DataError


def axis_interpolation(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation along one axis, corner-aligned.

    Output index a samples input coordinate a·(n_in − 1)/(n_out − 1), the convention of
    `scipy.ndimage.zoom(order=1)` and of `align_corners=True`; when n_in or n_out is 1 every output
    samples coordinate 0.

    Returns
    -------
    low, high : (n_out,) int64
        The two input indices around each output sample.
    weight_low, weight_high : (n_out,) float64
        Their weights, which sum to 1. `weight_high` is exactly 0 on grid-aligned samples.
    """
    step = (n_in - 1) / (n_out - 1) if n_out > 1 else 1.0  # same float arithmetic as scipy's zoom
    coordinate = np.minimum(np.arange(n_out) * step, n_in - 1)  # the clip only absorbs rounding
    low = np.floor(coordinate).astype(np.int64)
    weight_high = coordinate - low
    high = np.minimum(low + 1, n_in - 1)
    return low, high, 1.0 - weight_high, weight_high


def _interpolation_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Dense (n_out, n_in) matrix of `axis_interpolation`."""
    low, high, weight_low, weight_high = axis_interpolation(n_in, n_out)
    matrix = np.zeros((n_out, n_in))
    np.add.at(matrix, (np.arange(n_out), low), weight_low)
    np.add.at(matrix, (np.arange(n_out), high), weight_high)
    return matrix


def resize_trilinear(volume: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Trilinear resize of one (X, Y, Z) volume to `grid`, corner-aligned, in float64.

    Same values as `scipy.ndimage.zoom(volume, grid / volume.shape, order=1)`, but always of shape
    exactly `grid`. Meant for one-off work such as masks; use `PatchPreprocessor` for data.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3 or 0 in volume.shape:
        raise DataError(f"expected one non-empty (X, Y, Z) volume; got an array of shape {volume.shape}")
    mx, my, mz = (_interpolation_matrix(n_in, n_out) for n_in, n_out in zip(volume.shape, grid))
    # Separable: resize X, then Y, then Z. (i, j, k) native → (a, b, c) common.
    return np.einsum("ai,bj,ck,ijk->abc", mx, my, mz, volume.astype(np.float64), optimize=True)
