"""The geometry of the patch tokens (Sec. 3.1, App. B): common grid, patch size, masking."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neurochat.errors import ConfigError
from neurochat.preprocess.checks import is_positive_int

# Paper geometry (App. B): subj01's func1pt8mm grid in (X, Y, Z), and the patch sizes of the main
# model (14) and of the localization ensemble (Sec. 4.4: 14, 12, 10).
PAPER_COMMON_GRID = (81, 104, 83)
PAPER_PATCH_SIZES = (14, 12, 10)


@dataclass(frozen=True)
class PreprocessConfig:
    """Geometry of the patch tokens (paper Sec. 3.1, App. B).

    Parameters
    ----------
    common_grid
        (X, Y, Z) grid every subject is resized to: subj01's native grid, (81, 104, 83) for NSD
        (the paper's "83×104×81" is the same grid in NSD's HDF5 axis order).
    patch_size
        Edge r of the cubic patches; each token has C = r³ values. The paper uses 14, and 12 and 10
        for the other members of the localization ensemble.
    zero_outside_mask
        Zero the resized voxels outside the union of the subjects' nsdgeneral masks. They carry no
        visual information (App. B); turn it off to feed the full content of the kept patches.
    """

    common_grid: tuple[int, int, int]
    patch_size: int
    zero_outside_mask: bool = True

    def __post_init__(self) -> None:
        grid = tuple(self.common_grid) if isinstance(self.common_grid, (tuple, list)) else None
        if grid is None or len(grid) != 3 or not all(is_positive_int(n) for n in grid):
            raise ConfigError(
                f"common_grid must be three positive integers (X, Y, Z), e.g. {PAPER_COMMON_GRID}; "
                f"got {self.common_grid!r}"
            )
        if not is_positive_int(self.patch_size):
            raise ConfigError(
                f"patch_size must be a positive integer (the paper uses 14, 12 or 10); "
                f"got {self.patch_size!r}"
            )
        if not isinstance(self.zero_outside_mask, (bool, np.bool_)):
            raise ConfigError(f"zero_outside_mask must be True or False; got {self.zero_outside_mask!r}")
        # Lists (e.g. read back from JSON) are stored as tuples so configs compare and hash equal.
        object.__setattr__(self, "common_grid", tuple(int(n) for n in grid))
        object.__setattr__(self, "patch_size", int(self.patch_size))
        object.__setattr__(self, "zero_outside_mask", bool(self.zero_outside_mask))


PAPER_PREPROCESS = PreprocessConfig(common_grid=PAPER_COMMON_GRID, patch_size=PAPER_PATCH_SIZES[0])
