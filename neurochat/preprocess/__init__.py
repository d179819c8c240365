"""fMRI 3D patch preprocessing: native volume → common grid → r³ patches → tokens (Sec. 3.1, App. B).

The paper maps every subject's BOLD volume to one token layout with no subject-specific
parameters (Eq. 1, p: b_origin ∈ R^{X_s×Y_s×Z_s} ↦ b ∈ R^{N×C}):

1. trilinear resize of the native grid S_s to the common grid G (subj01's grid; the paper's
   "83×104×81" is NSD's HDF5 order, (81, 104, 83) in the NIfTI (X, Y, Z) order used here);
2. zero the voxels outside the union U of all subjects' nsdgeneral masks (optional, on by default);
3. zero-pad at the end of each axis up to a multiple of the patch size r;
4. cut non-overlapping r³ patches (C = r³ values each) and keep the N patches that meet U.

Every step is linear, so for one native grid the whole pipeline is one sparse matrix P with at most
8 non-zeros per row (the trilinear corners). `SubjectOperator` holds P restricted to the rows that
can be non-zero and to the native voxels that reach them (the *support*), so training can keep
compact (trials, n_support) voxel arrays and build tokens on the fly with one sparse product.
Its transpose Pᵀ (`SubjectOperator.adjoint`) is exactly the back-projection from token space to
native voxels that concept localization and ablation need (Sec. 4.4).

Axis order everywhere is NIfTI (X, Y, Z), as nibabel returns volumes.

Precision: inputs may be numpy arrays or torch tensors of any floating dtype. Results are torch
float32, except that float64 inputs stay float64 (so exactness checks can run in double precision).
Torch inputs are processed on their own device.

The package, one concern per module: `config` (the geometry), `interpolation` (trilinear weights),
`sparse_operator` (P and Pᵀ for one native grid), `preprocessor` (the union mask and kept patches shared by
all subjects), `checks` (validation at the boundary, with messages that name the likely mistake).
"""

from neurochat.preprocess.checks import MAX_RESIZE_FACTOR
from neurochat.preprocess.config import PAPER_COMMON_GRID, PAPER_PATCH_SIZES, PAPER_PREPROCESS, PreprocessConfig
from neurochat.preprocess.interpolation import resize_trilinear
from neurochat.preprocess.sparse_operator import SubjectOperator
from neurochat.preprocess.preprocessor import STATE_FORMAT, PatchPreprocessor

__all__ = [
    "MAX_RESIZE_FACTOR",
    "PAPER_COMMON_GRID",
    "PAPER_PATCH_SIZES",
    "PAPER_PREPROCESS",
    "STATE_FORMAT",
    "PatchPreprocessor",
    "PreprocessConfig",
    "SubjectOperator",
    "resize_trilinear",
]
