"""Preprocessing speed: native fMRI volumes → patch tokens, ours (batched) vs. a per-volume scipy reference.

Paper geometry (App. B): the native func1pt8mm grids of NSD subjects 01, 02, 05 and 07, resized to
subj01's grid 81×104×83 (X, Y, Z; the paper's "83×104×81" in HDF5 order) and cut into 14³ patches.
The real union of nsdgeneral masks is not needed for timing: a deterministic synthetic one stands in
(`synthetic_union_mask`). Both implementations get the same random float32 volumes; their outputs
must agree. Operator construction is timed once, apart from the per-volume rates.

Example: python -m neurochat.bench preprocess --batch 32 --repeats 3 --json runs/bench/preprocess.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import TYPE_CHECKING, Any, Callable

from neurochat.cli import write_json
from neurochat.sim.config import NSD_GRIDS_XYZ, SUBJECTS

# numpy, scipy, torch and neurochat.preprocess are imported where used, so that
# `python -m neurochat.bench --help` (which reads every benchmark's options) answers at once
if TYPE_CHECKING:
    import numpy as np

# NSD func1pt8mm grids (X, Y, Z) of the paper's four subjects (see design/NSD_FORMAT.md).
NSD_NATIVE_GRIDS = {subject: NSD_GRIDS_XYZ[subject] for subject in SUBJECTS}
# About the size of the union of those subjects' nsdgeneral masks (12,682–15,724 voxels each).
SYNTHETIC_UNION_VOXELS = 25_000
# float32 outputs of two different float pipelines: agreement to a few float32 ulps of unit values.
AGREEMENT_TOLERANCE = 1e-5
# Shortest timed stretch per repeat; one pass of ours takes only tens of milliseconds.
MIN_TIMED_SECONDS = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=_positive_int, default=32, help="volumes per subject (default: 32)")
    parser.add_argument("--repeats", type=_positive_int, default=3,
                        help="timed repeats; the median rate is reported (default: 3)")
    parser.add_argument("--patch-size", type=_positive_int, help="r (default: the paper's main size, 14)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="torch intra-op threads (default: torch's own choice, one per core)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mask and the volumes (default: 0)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def synthetic_union_mask(
    grid: tuple[int, int, int], n_voxels: int = SYNTHETIC_UNION_VOXELS, seed: int = 0
) -> np.ndarray:
    """A deterministic stand-in for the union of NSD's nsdgeneral masks: a posterior cortical shell.

    An ellipsoidal brain fills the grid; its outer shell (the outer ~20 % of the radius, with a
    seeded low-frequency wobble so the surface is not perfectly smooth) stands for cortex, and the
    `n_voxels` shell voxels nearest the low-Y end (standing for the occipital pole, where nsdgeneral
    lies) form the mask. The orientation does not matter for timing; the voxel count and the number
    of kept patches are what make the work realistic.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*(np.linspace(-1.0, 1.0, n) for n in grid), indexing="ij")  # each (X, Y, Z)
    radius = np.sqrt(x**2 + y**2 + z**2) / 0.95
    wobble = np.zeros(grid)
    for _ in range(4):
        (fx, fy, fz), (px, py, pz) = rng.uniform(1.0, 4.0, size=3), rng.uniform(0.0, 2 * np.pi, size=3)
        wobble += 0.03 * np.sin(fx * x + px) * np.sin(fy * y + py) * np.sin(fz * z + pz)
    shell_index = np.flatnonzero((radius > 0.8 + wobble) & (radius < 1.0 + wobble))
    posterior_first = shell_index[np.argsort(y.reshape(-1)[shell_index], kind="stable")]
    mask = np.zeros(grid, dtype=bool)
    mask.reshape(-1)[posterior_first[:n_voxels]] = True
    return mask


def _patches(padded: np.ndarray, r: int) -> np.ndarray:
    """(Px·r, Py·r, Pz·r) → (Px·Py·Pz, r³), patches and their voxels both in C order."""
    px, py, pz = (n // r for n in padded.shape)
    return padded.reshape(px, r, py, r, pz, r).transpose(0, 2, 4, 1, 3, 5).reshape(-1, r**3)


def reference_tokens(volume: np.ndarray, union_mask: np.ndarray, r: int, kept: np.ndarray) -> np.ndarray:
    """The plain pipeline, one volume at a time: zoom → mask → pad → patches → keep. Returns (N, r³)."""
    import numpy as np
    import scipy.ndimage

    grid = union_mask.shape
    resized = scipy.ndimage.zoom(volume, np.divide(grid, volume.shape), order=1)
    if resized.shape != grid:  # zoom rounds its output shape; crop or pad to the grid exactly
        resized = np.pad(resized, [(0, max(0, g - n)) for g, n in zip(grid, resized.shape)])
        resized = resized[: grid[0], : grid[1], : grid[2]]
    padded = np.pad(resized * union_mask, [(0, -n % r) for n in grid])  # zero-pad at the end of each axis
    return _patches(padded, r)[kept]


def _timed(one_pass: Callable[[], Any], n_volumes: int) -> tuple[float, Any]:
    """Volumes per second of `one_pass` (which handles `n_volumes`), looped for at least
    MIN_TIMED_SECONDS, and the output of its last pass."""
    passes, start = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - start < MIN_TIMED_SECONDS:
        output = one_pass()
        passes += 1
    return passes * n_volumes / (time.perf_counter() - start), output


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from neurochat.preprocess import PAPER_COMMON_GRID, PAPER_PATCH_SIZES, PatchPreprocessor, PreprocessConfig

    grid, r = PAPER_COMMON_GRID, args.patch_size or PAPER_PATCH_SIZES[0]
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)

    # 1. Inputs: the synthetic union mask and a batch of random volumes per subject.
    union_mask = synthetic_union_mask(grid, seed=args.seed)
    volumes = {
        s: rng.standard_normal((args.batch, *shape), dtype=np.float32) for s, shape in NSD_NATIVE_GRIDS.items()
    }
    n_volumes = args.batch * len(volumes)

    # 2. One-off setup, timed apart: the preprocessor and one sparse operator per native grid, with a
    # warm-up call that converts it to torch. The compact support values are what training stores.
    start = time.perf_counter()
    preprocessor = PatchPreprocessor(PreprocessConfig(common_grid=grid, patch_size=r), union_mask)
    operators = {s: preprocessor.operator(shape) for s, shape in NSD_NATIVE_GRIDS.items()}
    for subject, operator in operators.items():
        operator.tokens(volumes[subject][:1])
    setup_s = time.perf_counter() - start
    supports = {s: volumes[s].reshape(args.batch, -1)[:, op.support] for s, op in operators.items()}  # (B, V_s)
    kept = np.flatnonzero(_patches(np.pad(union_mask, [(0, -n % r) for n in grid]), r).any(axis=1))

    print(f"preprocess bench: common grid {_size(grid)} (X, Y, Z), r = {r}, synthetic union mask "
          f"{preprocessor.n_union_voxels} voxels → N = {preprocessor.n_patches} patches "
          f"of {preprocessor.token_dim}")
    print(f"subjects: {', '.join(f'{s} {_size(v)}' for s, v in NSD_NATIVE_GRIDS.items())}; "
          f"batch {args.batch} per subject ({n_volumes} volumes), {args.repeats} repeats, "
          f"torch threads {torch.get_num_threads()}")
    print(f"one-off operator construction ({len(operators)} grids): {setup_s:.2f} s")

    # 3. Timed passes over the same volumes; the median of the repeats is reported.
    def ours_pass() -> dict[str, torch.Tensor]:
        return {s: preprocessor(batch) for s, batch in volumes.items()}

    def support_pass() -> list[torch.Tensor]:
        return [operators[s].tokens_from_support(values) for s, values in supports.items()]

    def reference_pass() -> dict[str, np.ndarray]:
        return {
            s: np.stack([reference_tokens(v, union_mask, r, kept) for v in batch]) for s, batch in volumes.items()
        }

    passes = {"ours": ours_pass, "support": support_pass, "reference": reference_pass}
    rates: dict[str, list[float]] = {name: [] for name in passes}
    outputs: dict[str, Any] = {}
    for _ in range(args.repeats):
        for name, one_pass in passes.items():
            rate, outputs[name] = _timed(one_pass, n_volumes)
            rates[name].append(rate)
    ours_rate, support_rate, reference_rate = (statistics.median(rates[name]) for name in passes)
    ratio = ours_rate / reference_rate
    ours, reference = outputs["ours"], outputs["reference"]

    # 4. Agreement and report; the ratio goes on the last line.
    max_abs_diff = max(float(np.abs(ours[s].numpy() - reference[s]).max()) for s in volumes)
    tolerance = {"rtol": AGREEMENT_TOLERANCE, "atol": AGREEMENT_TOLERANCE}
    agree = all(np.allclose(ours[s].numpy(), reference[s], **tolerance) for s in volumes)
    print(f"agreement with the reference: np.allclose {agree}, max abs difference {max_abs_diff:.2e}")
    print(f"ours, native volumes → tokens (batched sparse operator): {ours_rate:10.1f} volumes/s")
    print(f"ours, compact support voxels → tokens (training path):    {support_rate:10.1f} volumes/s")
    print(f"reference, scipy.ndimage.zoom per volume:                {reference_rate:10.1f} volumes/s")
    if args.json:
        write_json(args.json, {
            "ours_vol_per_s": ours_rate,
            "ours_from_support_vol_per_s": support_rate,
            "reference_vol_per_s": reference_rate,
            "ratio": ratio,
            "operator_construction_s": setup_s,
            "allclose": agree,
            "max_abs_diff": max_abs_diff,
            "common_grid": list(grid),
            "patch_size": r,
            "native_grids": {s: list(v) for s, v in NSD_NATIVE_GRIDS.items()},
            "n_union_voxels": preprocessor.n_union_voxels,
            "n_patches": preprocessor.n_patches,
            "batch": args.batch,
            "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(),
        })
    print(f"ratio ours/reference: {ratio:.1f}x")
    return 0 if agree else 1


def _size(shape: tuple[int, ...]) -> str:
    return "×".join(map(str, shape))
