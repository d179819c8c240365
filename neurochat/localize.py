"""Concept localization: where does a concept live in this brain? (paper Sec. 4.4, Fig. 7)

The target is the cosine between the extractor's predicted CLIP image embedding ẑ_c and the CLIP
text embedding of the concept. GradCAM (Selvaraju et al.) reads the penultimate layer's patch
tokens: each token's activation weighted by the token-averaged gradient of the target, summed over
channels, ReLU. The per-patch score goes back to the subject's native voxels through the
preprocessor's exact adjoint (a weighted average over the patches each voxel reaches). Three
extractors with patch sizes 14/12/10 (demo: 7/6/5) are averaged, as in the paper.

Hooks are attached to the named hook point `model.penultimate` and always removed, also when the
computation raises; gradients are enabled locally, since app handlers may run without them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from neurochat.errors import DataError
from neurochat.models.extractor import ExtractorBundle

# nilearn's MNI152 2009 template grid at 2 mm (`load_mni152_template(resolution=2)`), for display
MNI_GRID_2MM = ((99, 117, 95), np.array([[2.0, 0, 0, -98], [0, 2, 0, -134], [0, 0, 2, -72], [0, 0, 0, 1]]))


class ConceptError(DataError):
    """A concept that cannot be localized (empty, or unknown to this preset's models)."""


@dataclass
class Heatmap:
    """A concept's heatmap for one subject's recording, in native space (0..1)."""

    concept: str
    subject: str
    native: np.ndarray  # (X, Y, Z) float32, 0 outside the search mask
    affine: np.ndarray  # the subject's voxel -> scanner mm affine (NIfTI header)
    to_mni: np.ndarray | None = None  # voxel -> MNI mm, when the subject's transform is known
    per_model: dict[int, np.ndarray] = field(default_factory=dict)  # patch size -> native map

    def to_nifti(self) -> nib.Nifti1Image:
        return nib.Nifti1Image(self.native.astype(np.float32), self.affine)

    def to_mni_nifti(self) -> nib.Nifti1Image:
        """The heatmap resampled (trilinear) onto the MNI152 2 mm grid, for display and group views."""
        if self.to_mni is None:
            raise DataError(f"no transform to MNI is known for {self.subject}: only the native-space heatmap exists")
        shape, mni_affine = MNI_GRID_2MM
        ijk = np.indices(shape).reshape(3, -1).T.astype(np.float64)  # (V, 3) MNI voxel indices
        xyz = ijk @ mni_affine[:3, :3].T + mni_affine[:3, 3]  # MNI mm
        native_ijk = (xyz - self.to_mni[:3, 3]) @ np.linalg.inv(self.to_mni[:3, :3]).T  # native voxel coords
        values = ndimage.map_coordinates(self.native, native_ijk.T, order=1, cval=0.0).reshape(shape)
        return nib.Nifti1Image(values.astype(np.float32), mni_affine)

    def top_voxels(self, fraction: float) -> np.ndarray:
        """bool (X, Y, Z): the `fraction` (0..1) of non-zero-mask voxels with the highest values."""
        inside = self.native > 0
        if not inside.any():
            return inside
        threshold = np.quantile(self.native[inside], 1.0 - fraction)
        return inside & (self.native >= threshold)


def gradcam_patches(bundle: ExtractorBundle, patch_tokens: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """GradCAM of cos(ẑ_c, text) over the penultimate layer's patch tokens → (N,) scores ≥ 0.

    `patch_tokens` (1, N, r³) are the preprocessor's 3D patch tokens of one recording.
    """
    model = bundle.model
    if bundle.config.layout != "vit3d":
        raise DataError("GradCAM maps patches back to the brain: it needs a ViT3D extractor, not the flattened baseline")
    saved: dict[str, torch.Tensor] = {}

    def keep_activation(module, args, output):
        saved["activation"] = output
        output.register_hook(lambda grad: saved.__setitem__("gradient", grad))

    handle = model.penultimate.register_forward_hook(keep_activation)
    try:
        with torch.enable_grad():
            tokens = patch_tokens.detach().float().requires_grad_(False)
            output = model(tokens)
            target = F.cosine_similarity(output.clip, text_embedding[None].to(output.clip), dim=-1).sum()
            model.zero_grad(set_to_none=True)
            target.backward()
    finally:
        handle.remove()
    activation = saved["activation"][0, 1:].detach()  # (N, D) patch tokens, CLS dropped
    gradient = saved["gradient"][0, 1:].detach()  # (N, D)
    channel_weights = gradient.mean(dim=0)  # GradCAM: gradients averaged over the spatial positions
    return F.relu((activation * channel_weights).sum(dim=-1))  # (N,)


class ConceptLocalizer:
    """Ensemble GradCAM localization of concepts in one subject's native space.

    Parameters
    ----------
    bundles : the ViT3D extractors of the ensemble (patch sizes 14/12/10; demo 7/6/5)
    vision : `VisionEncoders` (its CLIP text side embeds the concept)
    vocabulary : concepts this preset's models know (the demo's SimNSD concepts); None = any text
    """

    def __init__(self, bundles: list[ExtractorBundle], vision, vocabulary: list[str] | None = None):
        if not bundles:
            raise DataError("concept localization needs at least one ViT3D extractor")
        self.bundles = bundles
        self.vision = vision
        self.vocabulary = list(vocabulary) if vocabulary is not None else None
        self._text_cache: dict[str, torch.Tensor] = {}

    def check_concept(self, concept: str) -> str:
        name = (concept or "").strip().strip('"').strip().lower()
        if not name:
            raise ConceptError("which concept? Give a word or short phrase, e.g. 'cat' or 'beach'")
        if self.vocabulary is not None and name not in self.vocabulary:
            close = difflib.get_close_matches(name, self.vocabulary, n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ConceptError(
                f"'{name}' is not a concept this model knows.{hint} Known concepts: {', '.join(self.vocabulary)}"
            )
        return name

    def text_embedding(self, concept: str) -> torch.Tensor:
        name = self.check_concept(concept)
        if name not in self._text_cache:
            self._text_cache[name] = torch.as_tensor(self.vision.text_embeddings([name]))[0].float()
        return self._text_cache[name]

    def localize(self, volume: np.ndarray, concept: str, *, subject: str, affine: np.ndarray,
                 mask: np.ndarray | None = None, to_mni: np.ndarray | None = None) -> Heatmap:  # fmt: skip
        """The ensemble heatmap of `concept` for one native volume (X, Y, Z) in percent signal change.

        `mask` (bool, native) limits the map, e.g. to nsdgeneral; values are scaled to [0, 1].
        """
        name = self.check_concept(concept)
        text = self.text_embedding(name)
        volume = np.asarray(volume, dtype=np.float32)
        per_model = {}
        for bundle in self.bundles:
            operator = bundle.preprocessor.operator(volume.shape)
            patch_tokens = operator.tokens(volume[None])  # (1, N, r³)
            scores = gradcam_patches(bundle, bundle.tokens(patch_tokens), text)  # (N,)
            weighted = operator.patch_values_to_native(scores[None].double())[0]  # Pᵀ of the broadcast scores
            reach = operator.patch_values_to_native(torch.ones(1, len(scores), dtype=torch.float64))[0]
            native = torch.where(reach > 0, weighted / reach.clamp_min(1e-12), torch.zeros_like(weighted)).numpy()
            per_model[bundle.config.patch_size] = _unit_scale(native, mask)
        ensemble = _unit_scale(np.mean(list(per_model.values()), axis=0), mask)
        return Heatmap(name, subject, ensemble.astype(np.float32), np.asarray(affine), to_mni, per_model)


def _unit_scale(native: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    values = np.where(mask, native, 0.0) if mask is not None else native
    peak = values.max()
    return (values / peak if peak > 0 else values).astype(np.float32)
