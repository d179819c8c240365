"""The 3D patch preprocessor (paper Sec. 3.1, App. B) against a plain scipy pipeline, and its adjoint."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage
import torch

from neurochat.errors import ConfigError, DataError
from neurochat.preprocess import PatchPreprocessor, PreprocessConfig, resize_trilinear

GRID = (9, 11, 10)  # a tiny common grid (X, Y, Z)
NATIVE_SHAPES = [(8, 12, 9), (11, 10, 13), (9, 11, 10), (5, 6, 4)]  # down-, up-, identity and mixed resizes
PATCH_SIZES = [1, 3, 4]  # 3 and 4 need padding on every axis of GRID


@pytest.fixture(scope="module")
def union_mask() -> np.ndarray:
    """A sparse blob in one corner of GRID, so that some patches are dropped and some voxels are outside."""
    rng = np.random.default_rng(0)
    mask = np.zeros(GRID, dtype=bool)
    mask[2:7, 0:6, 3:10] = rng.random((5, 6, 7)) < 0.3
    return mask


def reference_tokens(volume: np.ndarray, union_mask: np.ndarray, r: int, zero_outside_mask: bool) -> np.ndarray:
    """Independent oracle: scipy zoom (order 1) → mask → pad at the end → (N, r³) patches that meet the mask."""
    resized = scipy.ndimage.zoom(volume.astype(np.float64), np.divide(GRID, volume.shape), order=1)
    assert resized.shape == GRID
    if zero_outside_mask:
        resized = resized * union_mask
    padding = [(0, -n % r) for n in GRID]
    px, py, pz = ((n + p) // r for n, (_, p) in zip(GRID, padding))

    def patches(array: np.ndarray) -> np.ndarray:  # (px·r, py·r, pz·r) → (px·py·pz, r³)
        return np.pad(array, padding).reshape(px, r, py, r, pz, r).transpose(0, 2, 4, 1, 3, 5).reshape(-1, r**3)

    kept = patches(union_mask).any(axis=1)
    return patches(resized)[kept]


def make(union_mask: np.ndarray, r: int = 3, zero_outside_mask: bool = True) -> PatchPreprocessor:
    return PatchPreprocessor(PreprocessConfig(GRID, r, zero_outside_mask), union_mask)


@pytest.mark.parametrize("zero_outside_mask", [True, False])
@pytest.mark.parametrize("r", PATCH_SIZES)
@pytest.mark.parametrize("native_shape", NATIVE_SHAPES)
def test_tokens_equal_reference_pipeline(union_mask, native_shape, r, zero_outside_mask):
    preprocessor = make(union_mask, r, zero_outside_mask)
    volumes = np.random.default_rng(1).standard_normal((2, *native_shape))

    tokens = preprocessor(volumes)  # float64 in → float64 out: a tight comparison
    expected = np.stack([reference_tokens(v, union_mask, r, zero_outside_mask) for v in volumes])
    assert tokens.shape == (2, preprocessor.n_patches, r**3)
    np.testing.assert_allclose(tokens.numpy(), expected, rtol=0, atol=1e-12)

    tokens32 = preprocessor(volumes.astype(np.float32))
    assert tokens32.dtype == torch.float32
    np.testing.assert_allclose(tokens32.numpy(), expected, rtol=0, atol=1e-5)


def test_patch_coords_are_the_kept_patches_in_c_order(union_mask):
    preprocessor = make(union_mask, r=4)
    coords = preprocessor.patch_coords
    assert preprocessor.padded_grid == (12, 12, 12)
    assert [tuple(c) for c in coords] == sorted(tuple(c) for c in coords)
    for x, y, z in coords:
        assert union_mask[4 * x : 4 * x + 4, 4 * y : 4 * y + 4, 4 * z : 4 * z + 4].any()
    assert preprocessor.n_patches < 27  # the corner blob leaves some of the 3×3×3 patches out


def test_union_from_subject_masks_and_same_n_for_every_subject():
    rng = np.random.default_rng(2)
    masks = {}
    for subject, shape in zip(["subj01", "subj02", "subj05"], [(9, 11, 10), (10, 12, 11), (8, 10, 9)]):
        mask = rng.choice(np.array([-1, 0], dtype=np.int16), size=shape)  # NSD coding: -1 not cortex, 0 cortex
        x0 = rng.integers(2, 4)
        mask[x0 : x0 + 3, 2:5, 3:6] = 1  # a small nsdgeneral blob, placed differently per subject
        masks[subject] = mask
    preprocessor = PatchPreprocessor.from_subject_masks(PreprocessConfig(GRID, 3), masks)

    expected = np.zeros(GRID, dtype=bool)
    for mask in masks.values():
        expected |= scipy.ndimage.zoom((mask > 0).astype(float), np.divide(GRID, mask.shape), order=1) > 0
    np.testing.assert_array_equal(preprocessor.union_mask, expected)
    assert 0 < preprocessor.n_union_voxels < expected.size  # -1 (not cortex) did not count as inside

    for mask in masks.values():
        tokens = preprocessor(rng.standard_normal(mask.shape).astype(np.float32))
        assert tokens.shape == (preprocessor.n_patches, 27)


def test_resize_trilinear_matches_scipy_zoom():
    volume = np.random.default_rng(3).standard_normal((7, 12, 5))
    expected = scipy.ndimage.zoom(volume, np.divide(GRID, volume.shape), order=1)
    np.testing.assert_allclose(resize_trilinear(volume, GRID), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("zero_outside_mask", [True, False])
@pytest.mark.parametrize("native_shape", NATIVE_SHAPES)
def test_adjoint_is_the_exact_transpose(union_mask, native_shape, zero_outside_mask):
    preprocessor = make(union_mask, r=4, zero_outside_mask=zero_outside_mask)
    operator = preprocessor.operator(native_shape)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, *native_shape))
    y = rng.standard_normal((3, preprocessor.n_patches, preprocessor.token_dim))

    forward = float((operator.tokens(x).numpy() * y).sum())  # ⟨P x, y⟩
    back = operator.adjoint(y)
    backward = float((x * back.numpy()).sum())  # ⟨x, Pᵀ y⟩
    assert back.shape == (3, *native_shape) and back.dtype == torch.float64
    assert abs(forward - backward) <= 1e-10 * abs(forward)

    outside = np.ones(int(np.prod(native_shape)), dtype=bool)
    outside[operator.support] = False
    assert not back.numpy().reshape(3, -1)[:, outside].any()  # nothing lands outside the support


def test_one_patch_map_lands_exactly_on_its_trilinear_footprint(union_mask):
    native_shape, r = (7, 8, 6), 3
    preprocessor = make(union_mask, r)
    operator = preprocessor.operator(native_shape)
    n_voxels = int(np.prod(native_shape))
    # Footprint by brute force: which native voxels reach patch k through the reference pipeline.
    reach = np.stack([
        np.abs(reference_tokens(np.eye(n_voxels)[j].reshape(native_shape), union_mask, r, True)).sum(axis=1) > 0
        for j in range(n_voxels)
    ])  # (n_voxels, N)
    for k in range(preprocessor.n_patches):
        one_patch = np.zeros(preprocessor.n_patches)
        one_patch[k] = 1.0
        native = operator.patch_values_to_native(one_patch).numpy()  # (X, Y, Z)
        assert native.shape == native_shape
        np.testing.assert_array_equal(native.reshape(-1) > 0, reach[:, k])
        assert (native >= 0).all()


def test_batched_equals_per_volume(union_mask):
    preprocessor = make(union_mask, r=3)
    native_shape = (8, 12, 9)
    operator = preprocessor.operator(native_shape)
    volumes = torch.randn(4, *native_shape, generator=torch.Generator().manual_seed(5))

    batched = preprocessor(volumes)
    single = torch.stack([preprocessor(v) for v in volumes])
    assert batched.shape == (4, preprocessor.n_patches, 27) and single.shape == batched.shape
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-6)

    support_values = volumes.reshape(4, -1)[:, torch.from_numpy(operator.support.copy())]  # (B, n_support)
    torch.testing.assert_close(operator.tokens_from_support(support_values), batched, rtol=0, atol=1e-6)

    back = operator.adjoint(batched)
    torch.testing.assert_close(back, torch.stack([operator.adjoint(t) for t in batched]), rtol=0, atol=1e-6)
    assert preprocessor.operator(native_shape) is operator  # cached per native grid


def test_common_grid_voxels_are_the_resized_union_voxels(union_mask):
    preprocessor = make(union_mask, r=4, zero_outside_mask=False)
    volume = np.random.default_rng(6).standard_normal((8, 12, 9))
    expected = scipy.ndimage.zoom(volume, np.divide(GRID, volume.shape), order=1)[union_mask]
    np.testing.assert_allclose(preprocessor.common_grid_voxels(volume).numpy(), expected, rtol=0, atol=1e-12)


def test_output_dtypes(union_mask):
    preprocessor = make(union_mask)
    volume = np.random.default_rng(7).standard_normal((8, 12, 9))
    assert preprocessor(volume.astype(np.float16)).dtype == torch.float32
    assert preprocessor(torch.from_numpy(volume).float()).dtype == torch.float32
    assert preprocessor(volume).dtype == torch.float64


def test_state_round_trip_rebuilds_identical_tokens(union_mask):
    preprocessor = make(union_mask, r=4, zero_outside_mask=False)
    state = preprocessor.state()
    scalars = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    restored_state = {**json.loads(json.dumps(scalars)), "union_mask_packbits": state["union_mask_packbits"].copy()}

    restored = PatchPreprocessor.from_state(restored_state)
    assert restored.config == preprocessor.config
    np.testing.assert_array_equal(restored.union_mask, union_mask)
    np.testing.assert_array_equal(restored.patch_coords, preprocessor.patch_coords)
    volumes = torch.randn(2, 11, 10, 13)
    assert torch.equal(restored(volumes), preprocessor(volumes))

    corrupt = dict(restored_state, n_patches=state["n_patches"] + 1)
    with pytest.raises(DataError, match="corrupt"):
        PatchPreprocessor.from_state(corrupt)


def test_clear_errors_for_bad_inputs(union_mask):
    preprocessor = make(union_mask, r=3)
    operator = preprocessor.operator((8, 12, 9))

    with pytest.raises(DataError, match=r"\(X, Y, Z\) or \(B, X, Y, Z\); got shape \(1, 2, 8, 12, 9\)"):
        preprocessor(np.zeros((1, 2, 8, 12, 9), dtype=np.float32))
    with pytest.raises(DataError, match=r"three positive integers .* got \(0, 4, 5\)"):
        preprocessor.operator((0, 4, 5))
    with pytest.raises(DataError, match=r"differs from the common grid .* by 5\.0× along axis 2"):
        preprocessor(np.zeros((9, 11, 10, 50), dtype=np.float32))  # (X, Y, Z, trials) passed as (B, X, Y, Z)
    with pytest.raises(DataError, match=r"got shape \(8, 12, 9, 5\)\. It looks like \(X, Y, Z, trials\)"):
        operator.tokens(np.zeros((8, 12, 9, 5), dtype=np.float32))
    with pytest.raises(DataError, match=r"floating point; got dtype int16.*/ 300"):
        preprocessor(np.zeros((8, 12, 9), dtype=np.int16))
    with pytest.raises(DataError, match=r"n_support = \d+ .* got shape \(2, 7\)"):
        operator.tokens_from_support(np.zeros((2, 7), dtype=np.float32))
    with pytest.raises(DataError, match=r"\(N, C\) = \(\d+, 27\); got shape \(4, 27\)"):
        operator.adjoint(np.zeros((4, 27), dtype=np.float32))
    with pytest.raises(DataError, match=r"patch values must have shape \(N,\) or \(B, N\)"):
        operator.patch_values_to_native(np.zeros((2, 3, 4), dtype=np.float32))

    with pytest.raises(DataError, match=r"common grid shape \(9, 11, 10\) .* got shape \(9, 11, 11\)"):
        PatchPreprocessor(PreprocessConfig(GRID, 3), np.ones((9, 11, 11), dtype=bool))
    with pytest.raises(DataError, match=r"boolean array; got dtype int64"):
        PatchPreprocessor(PreprocessConfig(GRID, 3), union_mask.astype(np.int64))
    with pytest.raises(DataError, match=r"is empty"):
        PatchPreprocessor(PreprocessConfig(GRID, 3), np.zeros(GRID, dtype=bool))
    with pytest.raises(ConfigError, match=r"patch_size must be a positive integer .* got 0"):
        PreprocessConfig(GRID, 0)
    with pytest.raises(ConfigError, match=r"common_grid must be three positive integers"):
        PreprocessConfig((9, 11), 3)
