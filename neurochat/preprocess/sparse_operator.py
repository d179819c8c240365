"""One native grid's preprocessing as a sparse matrix P (native voxels → tokens), and its exact adjoint Pᵀ."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import scipy.sparse
import torch

from neurochat.errors import DataError
from neurochat.preprocess.checks import as_float_tensor


class SubjectOperator:
    """The preprocessing of one native grid as a sparse linear map P: native voxels → tokens.

    Built by `PatchPreprocessor.operator(native_shape)`; do not construct it directly.

    Attributes
    ----------
    native_shape : tuple[int, int, int]
        (X, Y, Z) of the subject's grid.
    support : (n_support,) int64 ndarray
        Flat C-order indices into the native volume of the voxels that reach at least one token
        value with non-zero weight, ascending. No other native voxel affects the tokens.
    n_patches, patch_size, token_dim
        N, r and C = r³ of the tokens.
    """

    def __init__(
        self,
        native_shape: tuple[int, int, int],
        support: np.ndarray,
        matrix: scipy.sparse.csr_array,
        token_rows: np.ndarray,
        n_patches: int,
        patch_size: int,
    ) -> None:
        self.native_shape = native_shape
        self.support = support
        self.n_patches = n_patches
        self.patch_size = patch_size
        self.token_dim = patch_size**3
        # P restricted to the rows that can be non-zero: `matrix` is (R, n_support) and row i
        # is the flat token position token_rows[i] in [0, N·C).
        self._matrix = matrix
        self._token_rows = token_rows
        self._torch_cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = {}

    @property
    def n_support(self) -> int:
        """Number of native voxels in the support."""
        return int(self.support.size)

    def __repr__(self) -> str:
        return (
            f"SubjectOperator(native_shape={self.native_shape}, n_support={self.n_support}, "
            f"n_patches={self.n_patches}, token_dim={self.token_dim})"
        )

    # 1. Forward: P x

    def tokens_from_support(self, values: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Tokens from compact support-voxel values (the training path: no full volumes needed).

        Parameters
        ----------
        values : (n_support,) or (B, n_support)
            Native voxel values at `support`, e.g. ``volume.reshape(-1)[support]``.

        Returns
        -------
        torch.Tensor
            (N, C) or (B, N, C) tokens, matching the batching of the input.
        """
        values = as_float_tensor(values, "support values")
        if values.ndim not in (1, 2) or values.shape[-1] != self.n_support:
            raise DataError(
                f"support values must have shape (n_support,) or (B, n_support) with "
                f"n_support = {self.n_support} for native grid {self.native_shape}; "
                f"got shape {tuple(values.shape)}"
            )
        batched = values.ndim == 2
        support_first = values.reshape(-1, self.n_support).T.contiguous()  # (n_support, B)
        tokens = self._forward(support_first)
        return tokens if batched else tokens[0]

    def tokens_from_voxels(self, voxels: np.ndarray, values: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Tokens (B, N, C) from values (B, len(voxels)) at any native voxels, e.g. another operator's support.

        The compact path when `voxels` is this operator's support; otherwise through native volumes.
        """
        if np.array_equal(voxels, self.support):
            return self.tokens_from_support(values)
        rows = torch.as_tensor(np.asarray(values), dtype=torch.float32)
        volumes = torch.zeros(rows.shape[0], int(np.prod(self.native_shape)))
        volumes[:, torch.as_tensor(np.asarray(voxels))] = rows
        return self.tokens(volumes.reshape(-1, *self.native_shape))

    def tokens(self, volumes: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Tokens from native volumes.

        Parameters
        ----------
        volumes : (X, Y, Z) or (B, X, Y, Z)
            Native volumes on this operator's grid.

        Returns
        -------
        torch.Tensor
            (N, C) or (B, N, C) tokens, matching the batching of the input.
        """
        volumes = self._check_native(volumes, "volumes")
        batched = volumes.ndim == 4
        flat = volumes.reshape(-1, int(np.prod(self.native_shape)))  # (B, X·Y·Z)
        support = self._torch(volumes.device, volumes.dtype)[2]
        # Gather straight into (n_support, B): the layout the sparse product wants.
        support_first = flat.T[support].contiguous()  # (n_support, B)
        tokens = self._forward(support_first)
        return tokens if batched else tokens[0]

    def _forward(self, support_first: torch.Tensor) -> torch.Tensor:
        """(n_support, B) support values → (B, N, C) tokens.

        One torch CSR product for the whole batch: every token value is a sum of at most 8 weighted
        voxels, which a sparse product computes without the dense resized volume that a separable
        resize followed by patching would build, or the eight passes of weighted gathers.
        `python -m neurochat.bench preprocess` measures its rate (against `scipy.ndimage.zoom`).
        """
        matrix, _, _, token_rows = self._torch(support_first.device, support_first.dtype)
        batch = support_first.shape[1]
        # One sparse product computes every value that can be non-zero (≤ 8 terms each)...
        active = torch.sparse.mm(matrix, support_first)  # (R, B)
        # ...and the rest of the tokens (padding, and outside the union mask) stay zero.
        tokens = support_first.new_zeros(batch, self.n_patches * self.token_dim)  # (B, N·C)
        tokens[:, token_rows] = active.T
        return tokens.view(batch, self.n_patches, self.token_dim)  # (B, N, C)

    # 2. Adjoint: Pᵀ y

    def adjoint(self, tokens_like: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Exact transpose of the preprocessing: token-space arrays → native volumes.

        For every x and y, ⟨P x, y⟩ = ⟨x, Pᵀ y⟩. Native voxels outside `support` get 0. This is how
        a map computed on tokens (e.g. a GradCAM relevance, Sec. 4.4) is put back on native voxels.

        Parameters
        ----------
        tokens_like : (N, C) or (B, N, C)

        Returns
        -------
        torch.Tensor
            (X, Y, Z) or (B, X, Y, Z) native volumes, matching the batching of the input.
        """
        tokens_like = as_float_tensor(tokens_like, "token-space array")
        token_shape = (self.n_patches, self.token_dim)
        if tokens_like.ndim not in (2, 3) or tuple(tokens_like.shape[-2:]) != token_shape:
            raise DataError(
                f"adjoint expects an array shaped like the tokens, (N, C) or (B, N, C) with "
                f"(N, C) = {token_shape}; got shape {tuple(tokens_like.shape)}"
            )
        batched = tokens_like.ndim == 3
        flat = tokens_like.reshape(-1, self.n_patches * self.token_dim)  # (B, N·C)
        _, matrix_t, support, token_rows = self._torch(flat.device, flat.dtype)
        active_first = flat[:, token_rows].T.contiguous()  # (R, B)
        support_values = torch.sparse.mm(matrix_t, active_first)  # (n_support, B)
        native = flat.new_zeros(flat.shape[0], int(np.prod(self.native_shape)))  # (B, X·Y·Z)
        native[:, support] = support_values.T
        native = native.view(-1, *self.native_shape)  # (B, X, Y, Z)
        return native if batched else native[0]

    def patch_values_to_native(self, values: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Put one value per patch back on native voxels: Pᵀ of the value broadcast over its patch.

        A native voxel gets the sum, over the common-grid voxels its trilinear weights reach, of
        weight × that voxel's patch value. `patch_values_to_native(ones)` is the total weight per
        voxel; divide by it for a weighted average instead of a weighted sum.

        Parameters
        ----------
        values : (N,) or (B, N)
            One value per kept patch, in `PatchPreprocessor.patch_coords` order.

        Returns
        -------
        torch.Tensor
            (X, Y, Z) or (B, X, Y, Z) native volumes, matching the batching of the input.
        """
        values = as_float_tensor(values, "patch values")
        if values.ndim not in (1, 2) or values.shape[-1] != self.n_patches:
            raise DataError(
                f"patch values must have shape (N,) or (B, N) with N = {self.n_patches}; "
                f"got shape {tuple(values.shape)}"
            )
        # (..., N) → (..., N, C): every voxel of a patch carries the patch's value.
        return self.adjoint(values.unsqueeze(-1).expand(*values.shape, self.token_dim))

    # Helpers

    def _check_native(self, volumes: Any, what: str) -> torch.Tensor:
        volumes = as_float_tensor(volumes, what)
        if volumes.ndim not in (3, 4) or tuple(volumes.shape[-3:]) != self.native_shape:
            hint = ""
            if volumes.ndim == 4 and tuple(volumes.shape[:3]) == self.native_shape:
                hint = " It looks like (X, Y, Z, trials): put trials first with np.moveaxis(betas, -1, 0)."
            raise DataError(
                f"{what} must have shape (X, Y, Z) or (B, X, Y, Z) with (X, Y, Z) = "
                f"{self.native_shape}, this operator's native grid; got shape "
                f"{tuple(volumes.shape)}.{hint} Use PatchPreprocessor.operator(shape) for another grid."
            )
        return volumes

    def _torch(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """P and Pᵀ as torch CSR tensors, with the index arrays, cached per device and dtype."""
        key = (device, dtype)
        if key not in self._torch_cache:
            matrix_t = self._matrix.T.tocsr()
            self._torch_cache[key] = (
                _torch_csr(self._matrix, device, dtype),  # P: (R, n_support)
                _torch_csr(matrix_t, device, dtype),  # Pᵀ: (n_support, R)
                torch.tensor(self.support, device=device),  # copies: `support` is read-only
                torch.tensor(self._token_rows, device=device),
            )
        return self._torch_cache[key]


def _torch_csr(matrix: scipy.sparse.csr_array, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(
            torch.as_tensor(matrix.indptr, dtype=torch.int64),
            torch.as_tensor(matrix.indices, dtype=torch.int64),
            torch.as_tensor(matrix.data, dtype=dtype),
            size=matrix.shape,
            check_invariants=False,  # built from a valid scipy CSR
        ).to(device)
