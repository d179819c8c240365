"""The preprocessor shared by all subjects: common grid, union mask and kept patches (Sec. 3.1, App. B)."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import scipy.sparse
import torch
from einops import rearrange

from neurochat.errors import ConfigError, DataError
from neurochat.preprocess.checks import as_numpy, check_native_shape, check_resize_factor
from neurochat.preprocess.config import PreprocessConfig
from neurochat.preprocess.interpolation import axis_interpolation, resize_trilinear
from neurochat.preprocess.sparse_operator import SubjectOperator

# Version tag of `PatchPreprocessor.state()`, so checkpoints can be read back by later versions.
STATE_FORMAT = "neurochat.preprocess/1"


class PatchPreprocessor:
    """Maps any subject's native fMRI volumes to the shared (N, r³) patch tokens (Sec. 3.1, App. B).

    Parameters
    ----------
    config : PreprocessConfig
        Common grid, patch size and masking.
    union_mask : (X, Y, Z) bool ndarray on `config.common_grid`
        Union of all subjects' nsdgeneral masks after resizing (see `from_subject_masks`).

    Attributes
    ----------
    patch_coords : (N, 3) int64 ndarray
        Patch-grid coordinates of the kept patches, in C order; token n covers common-grid voxels
        ``patch_coords[n] * r + (0 … r−1)`` along each axis.
    padded_grid : tuple[int, int, int]
        The common grid zero-padded up to multiples of r.
    n_patches, token_dim, n_union_voxels
        N, C = r³ and the number of voxels in the union mask. N depends only on the common grid,
        r and the union mask, so it is the same for every subject.

    Examples
    --------
    >>> prep = PatchPreprocessor.from_subject_masks(PAPER_PREPROCESS, masks)  # doctest: +SKIP
    >>> tokens = prep(volumes)   # (B, X, Y, Z) native → (B, N, 2744)       # doctest: +SKIP
    """

    def __init__(self, config: PreprocessConfig, union_mask: np.ndarray) -> None:
        # 1. Check inputs
        if not isinstance(config, PreprocessConfig):
            raise ConfigError(f"config must be a PreprocessConfig; got {type(config).__name__}")
        union_mask = as_numpy(union_mask, "union mask")
        if union_mask.dtype != np.bool_:
            raise DataError(
                f"union mask must be a boolean array; got dtype {union_mask.dtype}. "
                f"Threshold it explicitly, e.g. mask > 0."
            )
        if union_mask.shape != config.common_grid:
            raise DataError(
                f"union mask must have the common grid shape {config.common_grid} (X, Y, Z); "
                f"got shape {union_mask.shape}"
            )
        if not union_mask.any():
            raise DataError(
                f"union mask of shape {union_mask.shape} is empty: no patch would be kept. "
                f"Check that the nsdgeneral masks were thresholded with > 0."
            )
        self.config = config
        self.union_mask = union_mask.copy()
        self.union_mask.flags.writeable = False
        grid, r = config.common_grid, config.patch_size

        # 2. Pad at the end of each axis and keep the patches that meet the union mask (App. B).
        patch_grid = tuple(-(-n // r) for n in grid)  # ceil(n / r)
        self.padded_grid = tuple(p * r for p in patch_grid)
        padded_mask = np.zeros(self.padded_grid, dtype=bool)
        padded_mask[: grid[0], : grid[1], : grid[2]] = union_mask
        mask_patches = rearrange(
            padded_mask, "(px x) (py y) (pz z) -> px py pz (x y z)", x=r, y=r, z=r
        )  # (Px, Py, Pz, r³)
        self.patch_coords = np.argwhere(mask_patches.any(axis=-1))  # (N, 3), C order
        self.patch_coords.flags.writeable = False

        # 3. The common-grid voxel behind each token value: patch n, offset (x, y, z) in C order —
        # the same layout as the einops pattern above.
        offsets = np.stack(np.unravel_index(np.arange(r**3), (r, r, r)), axis=-1)  # (C, 3)
        voxels = (self.patch_coords[:, None, :] * r + offsets[None]).reshape(-1, 3)  # (N·C, 3)
        in_grid = (voxels < np.asarray(grid)).all(axis=1)  # (N·C,) False on padding
        in_union = np.zeros_like(in_grid)
        in_union[in_grid] = union_mask[tuple(voxels[in_grid].T)]
        # Only these token values can be non-zero: the operator computes these rows and no others.
        active = in_grid & in_union if config.zero_outside_mask else in_grid
        self._active_rows = np.flatnonzero(active)  # (R,) flat positions in N·C
        self._active_voxels = voxels[self._active_rows]  # (R, 3) common-grid coordinates
        # Token position of each union voxel, union voxels in C order (for `common_grid_voxels`).
        position = np.full(grid, -1, dtype=np.int64)
        position[tuple(voxels[in_grid].T)] = np.flatnonzero(in_grid)
        self._union_positions = position[union_mask]  # (n_union_voxels,)

        self._operators: dict[tuple[int, int, int], SubjectOperator] = {}

    @classmethod
    def from_subject_masks(
        cls, config: PreprocessConfig, masks: Mapping[str, np.ndarray]
    ) -> PatchPreprocessor:
        """Build the preprocessor from every subject's native nsdgeneral mask (App. B).

        Parameters
        ----------
        config : PreprocessConfig
        masks : mapping subject → (X, Y, Z) array on that subject's native grid
            NSD coding: 1 inside nsdgeneral, 0 cortex outside it, −1 not cortex. Each ``mask > 0``
            is resized trilinearly to the common grid; a common voxel joins the union when any
            subject's resized mask is > 0 there.
        """
        if not isinstance(config, PreprocessConfig):
            raise ConfigError(f"config must be a PreprocessConfig; got {type(config).__name__}")
        if not masks:
            raise DataError("no subject masks given: need at least one nsdgeneral mask to build the union")
        union = np.zeros(config.common_grid, dtype=bool)
        for subject, mask in masks.items():
            mask = as_numpy(mask, f"nsdgeneral mask of {subject}")
            if mask.ndim != 3 or 0 in mask.shape:
                raise DataError(
                    f"nsdgeneral mask of {subject} must be one non-empty (X, Y, Z) volume; "
                    f"got shape {mask.shape}"
                )
            check_resize_factor(mask.shape, config.common_grid, f"nsdgeneral mask of {subject}")
            union |= resize_trilinear(mask > 0, config.common_grid) > 0
        return cls(config, union)

    # Geometry

    @property
    def n_patches(self) -> int:
        """N, the number of kept patches (tokens per volume)."""
        return int(len(self.patch_coords))

    @property
    def token_dim(self) -> int:
        """C = r³, the values per token."""
        return self.config.patch_size**3

    @property
    def n_union_voxels(self) -> int:
        """Number of common-grid voxels in the union mask."""
        return int(self._union_positions.size)

    @property
    def union_token_positions(self) -> np.ndarray:
        """(n_union_voxels,) flat positions in the (N·C) token layout of the union-mask voxels, in the
        C order of the common grid: ``tokens.reshape(B, -1)[:, positions]`` are the flattened voxels."""
        return self._union_positions

    def __repr__(self) -> str:
        return (
            f"PatchPreprocessor({self.config}, n_union_voxels={self.n_union_voxels}, "
            f"n_patches={self.n_patches}, token_dim={self.token_dim})"
        )

    # Operators and data

    def operator(self, native_shape: tuple[int, int, int]) -> SubjectOperator:
        """The sparse operator of one native (X, Y, Z) grid, built once and cached."""
        native_shape = check_native_shape(native_shape)
        if native_shape not in self._operators:
            check_resize_factor(native_shape, self.config.common_grid, "native grid")
            self._operators[native_shape] = self._build_operator(native_shape)
        return self._operators[native_shape]

    def __call__(self, volumes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Native volumes → tokens; the native grid is the shape of the input.

        Parameters
        ----------
        volumes : (X, Y, Z) or (B, X, Y, Z), floating

        Returns
        -------
        torch.Tensor
            (N, C) or (B, N, C) tokens, matching the batching of the input.
        """
        shape = tuple(volumes.shape) if hasattr(volumes, "shape") else None
        if shape is None or len(shape) not in (3, 4):
            raise DataError(
                f"volumes must have shape (X, Y, Z) or (B, X, Y, Z); got "
                f"{'shape ' + str(shape) if shape is not None else type(volumes).__name__}"
            )
        return self.operator(shape[-3:]).tokens(volumes)

    def common_grid_voxels(self, volumes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """The union-mask voxels of the resized volumes, flattened in C order (no patching).

        This is the "flattened voxels" input of the baselines the paper compares against (Sec. 3.1).

        Returns
        -------
        torch.Tensor
            (n_union_voxels,) or (B, n_union_voxels), matching the batching of the input.
        """
        tokens = self(volumes)
        flat = tokens.reshape(*tokens.shape[:-2], -1)  # (..., N·C)
        return flat[..., torch.as_tensor(self.union_token_positions, device=flat.device)]

    # Checkpoints

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild this preprocessor exactly (for checkpoints).

        Values are JSON-able except ``union_mask_packbits``, a uint8 ndarray
        (``np.packbits`` of the C-order flattened mask) suited to safetensors or ``np.savez``.
        """
        return {
            "format": STATE_FORMAT,
            "common_grid": list(self.config.common_grid),
            "patch_size": self.config.patch_size,
            "zero_outside_mask": self.config.zero_outside_mask,
            "n_union_voxels": self.n_union_voxels,
            "n_patches": self.n_patches,
            "union_mask_packbits": np.packbits(self.union_mask.reshape(-1)),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> PatchPreprocessor:
        """Rebuild a preprocessor from `state()`; checks that the mask and N come back identical."""
        required = {"format", "common_grid", "patch_size", "zero_outside_mask", "union_mask_packbits"}
        missing = required - set(state)
        if missing:
            raise DataError(
                f"preprocessing state is missing {sorted(missing)}; "
                f"was it written by PatchPreprocessor.state()?"
            )
        if state["format"] != STATE_FORMAT:
            raise DataError(
                f"preprocessing state has format {state['format']!r}; this version reads {STATE_FORMAT!r}"
            )
        config = PreprocessConfig(
            common_grid=tuple(state["common_grid"]),
            patch_size=state["patch_size"],
            zero_outside_mask=state["zero_outside_mask"],
        )
        bits = np.asarray(state["union_mask_packbits"], dtype=np.uint8).reshape(-1)
        n_voxels = int(np.prod(config.common_grid))
        n_bytes = -(-n_voxels // 8)  # ceil(n_voxels / 8)
        if bits.size != n_bytes:
            raise DataError(
                f"union_mask_packbits has {bits.size} bytes; a {config.common_grid} mask needs {n_bytes}"
            )
        union_mask = np.unpackbits(bits, count=n_voxels).astype(bool).reshape(config.common_grid)
        preprocessor = cls(config, union_mask)
        rebuilt = {"n_union_voxels": preprocessor.n_union_voxels, "n_patches": preprocessor.n_patches}
        for key, value in rebuilt.items():
            if key in state and int(state[key]) != value:
                raise DataError(
                    f"preprocessing state says {key} = {state[key]} but its mask gives {value}; "
                    f"the state is corrupt"
                )
        return preprocessor

    # Construction of P

    def _build_operator(self, native_shape: tuple[int, int, int]) -> SubjectOperator:
        """P for one native grid: each active token value is a trilinear mix of ≤ 8 native voxels."""
        voxels = self._active_voxels  # (R, 3) common-grid coordinates
        low_high, weights = [], []
        for axis, (n_in, n_out) in enumerate(zip(native_shape, self.config.common_grid)):
            low, high, weight_low, weight_high = axis_interpolation(n_in, n_out)
            at = voxels[:, axis]
            low_high.append(np.stack([low[at], high[at]], axis=1))  # (R, 2)
            weights.append(np.stack([weight_low[at], weight_high[at]], axis=1))  # (R, 2)
        # The 2×2×2 corners of each sample: flat C-order native index and product weight.
        (ix, iy, iz), (wx, wy, wz) = low_high, weights
        ny, nz = native_shape[1], native_shape[2]
        # (R, 2, 1, 1), (R, 1, 2, 1), (R, 1, 1, 2) broadcast to (R, 2, 2, 2)
        corner_index = (ix[:, :, None, None] * ny + iy[:, None, :, None]) * nz + iz[:, None, None, :]
        corner_weight = wx[:, :, None, None] * wy[:, None, :, None] * wz[:, None, None, :]
        corner_index = corner_index.reshape(len(voxels), 8)  # (R, 8)
        corner_weight = corner_weight.reshape(len(voxels), 8)  # (R, 8)

        # Keep the non-zero weights only; they define the support and the CSR rows.
        nonzero = corner_weight > 0  # grid-aligned samples have zero-weight corners
        support, columns = np.unique(corner_index[nonzero], return_inverse=True)
        row_starts = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
        matrix = scipy.sparse.csr_array(
            (corner_weight[nonzero], columns.reshape(-1), row_starts), shape=(len(voxels), support.size)
        )
        support = support.astype(np.int64)
        support.flags.writeable = False
        return SubjectOperator(
            native_shape=native_shape,
            support=support,
            matrix=matrix,
            token_rows=self._active_rows,
            n_patches=self.n_patches,
            patch_size=self.config.patch_size,
        )
