"""Concept localization: where does a concept live in this brain? (paper Sec. 4.4, Fig. 7)

Two methods, both reading the extractor's predicted CLIP image embedding ẑ_c and the CLIP text
embedding t of the concept, and both averaged over an ensemble of three extractors with patch sizes
14/12/10 (demo: 7/6/5), as in the paper:

- **encoding** (the default wherever the subject has recordings on disk): the extractor is run on the
  subject's own training recordings, and its evidence for each concept, cos(ẑ_c, t), becomes a
  regressor of a voxelwise encoding model (ridge, all concepts of the vocabulary together, so that
  co-occurring or related concepts do not borrow each other's voxels). The map is each voxel's
  standardized weight for the concept: where activity goes up when the model sees the concept. This
  is the forward-model reading of a decoder (Haufe et al. 2014, NeuroImage 87:96): a decoder's
  gradients say which voxels it *reads*, which includes voxels it uses to cancel noise, not where the
  concept *lives*. On SimNSD, whose answer key says where each concept lives, this is the method
  that finds it (reports/REPORT.md; docs/results_notes.md); the map belongs to the subject, so every trial of a
  subject shows the same map for a concept.
- **gradcam** (the paper's method; used for an uploaded volume of an unknown subject, which has no
  recordings to fit on): GradCAM (Selvaraju et al.) over the penultimate layer's patch tokens of
  this recording, each token's activation weighted by the token-averaged gradient of the target,
  summed over channels, ReLU. The per-patch score goes back to the subject's native voxels through
  the preprocessor's exact adjoint (a weighted average over the patches each voxel reaches). Hooks
  are attached to the named hook point `model.penultimate` and always removed, also when the
  computation raises; gradients are enabled locally, since app handlers may run without them.
"""

from __future__ import annotations

import difflib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from neurochat.encoding import (
    DEFAULT_RIDGE,
    EncodingStatistics,
    ReferenceRecordings,
    StatisticsStore,
    encoding_statistics,
)
from neurochat.errors import DataError
from neurochat.models.extractor import ExtractorBundle

log = logging.getLogger(__name__)

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
    method: str = "encoding"  # "encoding" or "gradcam" (see the module docstring)
    search: np.ndarray | None = None  # bool (X, Y, Z): where the map was computed (nsdgeneral); None = everywhere

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
        image = nib.Nifti1Image(values.astype(np.float32), mni_affine)
        image.set_sform(mni_affine, code="mni")  # code 4: viewers and tools then read the grid as MNI152
        image.set_qform(mni_affine, code="mni")
        return image

    def top_voxels(self, fraction: float) -> np.ndarray:
        """bool (X, Y, Z): the `fraction` (0..1) of the search region's voxels with the highest values.

        q% is of the whole search region (nsdgeneral), as the ablation's q is defined — not of the
        voxels the map happens to light up. Voxels with no evidence (value 0) are never picked, so a
        map lit in fewer voxels than that gives only those.
        """
        search = self.search if self.search is not None else np.ones(self.native.shape, bool)
        count = int(round(fraction * int(search.sum())))
        candidates = np.flatnonzero(search.ravel() & (self.native.ravel() > 0))
        chosen = candidates[np.argsort(self.native.ravel()[candidates], kind="stable")[::-1][:count]]
        picked = np.zeros(self.native.size, bool)
        picked[chosen] = True
        return picked.reshape(self.native.shape)


def gradcam_patches(bundle: ExtractorBundle, patch_tokens: torch.Tensor, text_embedding: torch.Tensor) -> torch.Tensor:
    """GradCAM of cos(ẑ_c, text) over the penultimate layer's patch tokens → (N,) scores ≥ 0.

    `patch_tokens` (1, N, r³) are the preprocessor's 3D patch tokens of one recording.
    """
    model = bundle.model
    if bundle.config.layout != "vit3d":
        raise DataError("GradCAM maps patches back to the brain: it needs a ViT3D extractor, not the flattened baseline")
    saved: dict[str, torch.Tensor] = {}
    this_thread = threading.get_ident()

    def keep_activation(module, args, output):
        # the app may run this model in another thread meanwhile (a β change): keep only our own forward's
        if threading.get_ident() == this_thread:
            saved["activation"] = output

    handle = model.penultimate.register_forward_hook(keep_activation)
    try:
        with torch.enable_grad():
            parameter = next(model.parameters())  # on a GPU the extractors run in bf16
            tokens = patch_tokens.detach().to(parameter.device, parameter.dtype).requires_grad_(False)
            output = model(tokens)
            target = F.cosine_similarity(output.clip, text_embedding[None].to(output.clip), dim=-1).sum()
            # the gradient at the activation only: the shared weights' .grad stay untouched
            (gradient,) = torch.autograd.grad(target, saved["activation"])
    finally:
        handle.remove()
    activation = saved["activation"][0, 1:].detach()  # (N, D) patch tokens, CLS dropped
    gradient = gradient[0, 1:].detach()  # (N, D)
    channel_weights = gradient.mean(dim=0)  # GradCAM: gradients averaged over the spatial positions
    return F.relu((activation * channel_weights).sum(dim=-1)).float().cpu()  # (N,)


METHODS = ("auto", "encoding", "gradcam")


class ConceptLocalizer:
    """Ensemble localization of concepts in one subject's native space (see the module docstring).

    Parameters
    ----------
    bundles : the ViT3D extractors of the ensemble (patch sizes 14/12/10; demo 7/6/5)
    vision : `VisionEncoders` (its CLIP text side embeds the concept)
    vocabulary : concepts this preset's models know (the demo's SimNSD concepts); None = any text.
        The encoding model fits all of them together; with None, each concept alone.
    references : subject -> its `ReferenceRecordings`, or None for a subject without recordings (an
        upload). Without it, only GradCAM is available.
    method : "auto" (encoding where the subject has reference recordings, else GradCAM), "encoding"
        or "gradcam"
    ridge : the encoding model's ridge, relative to the regressors' unit variance
    cache : folder for fitted statistics (one .npz per extractor and subject), so that a subject is
        fitted once per machine, not once per process; used when `references` has a `fingerprint`
    shipped : the weights bundle's folder of statistics fitted when it was built (read only; the demo
        ships its SimNSD subjects'), used when `references` has a `portable_fingerprint`
    """

    def __init__(self, bundles: list[ExtractorBundle], vision, vocabulary: list[str] | None = None,
                 references: Callable[[str], ReferenceRecordings | None] | None = None, method: str = "auto",
                 ridge: float = DEFAULT_RIDGE, cache: str | Path | None = None,
                 shipped: str | Path | None = None, subject_bundles: dict[str, list[ExtractorBundle]] | None = None):  # fmt: skip
        if not bundles:
            raise DataError("concept localization needs at least one ViT3D extractor")
        self.bundles = bundles
        self.subject_bundles = dict(subject_bundles or {})  # a new subject's own (adapted) models, instead of `bundles`
        self.vision = vision
        self.vocabulary = list(vocabulary) if vocabulary is not None else None
        self.references = references
        self.method = self._check_method(method)
        self.ridge = ridge
        self.store = StatisticsStore(cache, shipped)
        self._text_cache: dict[str, torch.Tensor] = {}
        self._statistics: dict[str, list[EncodingStatistics] | None] = {}  # subject -> one per bundle
        self._fitting = threading.Lock()  # one fit at a time: a background fit and a user's request share it
        self._preparing: set[str] = set()  # subjects being fitted in the background
        self._maps: dict[tuple[str, str], list[torch.Tensor]] = {}  # (subject, concept) -> (S,) per bundle

    @staticmethod
    def _check_method(method: str) -> str:
        if method not in METHODS:
            raise DataError(f"localization method {method!r}: choose one of {', '.join(METHODS)}")
        return method

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

    def bundles_for(self, subject: str | None) -> list[ExtractorBundle]:
        """The models that map `subject`'s brain: its adapted ones if it has any, else the ensemble."""
        return self.subject_bundles.get(subject, self.bundles)

    def text_embedding(self, concept: str) -> torch.Tensor:
        name = self.check_concept(concept)
        if name not in self._text_cache:
            self._text_cache[name] = torch.as_tensor(self.vision.text_embeddings([name]))[0].float()
        return self._text_cache[name]

    def _texts(self, names: list[str]) -> torch.Tensor:
        """(K, D) unit text embeddings, float64; the ones not embedded yet in one batch (a vocabulary one
        by one took seconds)."""
        missing = list(dict.fromkeys(n for n in names if n not in self._text_cache))
        if missing:
            for name, embedding in zip(missing, torch.as_tensor(self.vision.text_embeddings(missing)).float()):
                self._text_cache[name] = embedding
        return F.normalize(torch.stack([self._text_cache[n] for n in names]).double(), dim=-1)

    def forget_concept_maps(self) -> None:
        """Drop the cached per-concept maps (the fitted statistics stay); for benchmarks."""
        self._maps.clear()

    def forget_statistics(self) -> None:
        """Drop every subject's statistics and maps from memory (the files stay); for benchmarks."""
        with self._fitting:
            self._statistics.clear()
            self._maps.clear()

    def prepare(self, subject: str) -> threading.Thread | None:
        """Fit (or read from the disk cache) `subject`'s encoding statistics in a background thread.

        The first encoding map of a subject needs one pass of every extractor over its training trials
        (about half a minute for the demo); started when a subject is chosen, it is usually done before
        anyone asks for a concept. A localization asked meanwhile waits for this fit instead of starting
        its own. Returns the thread (None when there is nothing to do); errors are left for the
        foreground call to report.
        """
        if self.method == "gradcam" or self.references is None or subject in self._statistics or subject in self._preparing:
            return None
        self._preparing.add(subject)

        def fit() -> None:
            try:
                self._subject_statistics(subject)
                if self.vocabulary is not None:
                    self._texts(self.vocabulary)  # the encoding model's regressors, ready for the first map
            except Exception as error:  # noqa: BLE001 — the user's own request raises it again, with context
                log.warning("background encoding fit for %s failed: %s", subject, error)
            finally:
                self._preparing.discard(subject)

        thread = threading.Thread(target=fit, daemon=True, name=f"encoding-fit-{subject}")
        thread.start()
        return thread

    def has_reference(self, subject: str) -> bool:
        """Whether `subject` has recordings to fit encoding maps on (fits them on first use)."""
        return self._subject_statistics(subject) is not None

    def ship(self, folder: str | Path, subject: str, keep: np.ndarray | None = None) -> list[Path]:
        """Write `subject`'s fitted statistics (fitting them if needed) into a weights bundle's folder,
        only the voxels where `keep` (bool, native grid) is True if given, and with a vocabulary only
        its span (every concept this localizer can map comes out the same)."""
        statistics = self._subject_statistics(subject)
        if statistics is None:
            raise DataError(f"no recordings of {subject} to fit an encoding map on: nothing to ship")
        texts = self._texts(self.vocabulary) if self.vocabulary is not None else None
        return self.store.ship(folder, subject, self.bundles_for(subject), self.references, statistics, keep, texts)

    def method_for(self, subject: str, method: str | None = None) -> str:
        """The method a localization of `subject` uses: "encoding" or "gradcam"."""
        method = self._check_method(method or self.method)
        if method == "auto":
            return "encoding" if self.has_reference(subject) else "gradcam"
        if method == "encoding" and not self.has_reference(subject):
            raise DataError(f"no recordings of {subject} to fit an encoding map on (an uploaded volume?): "
                            "localize it with method='gradcam'")  # fmt: skip
        return method

    def localize(self, volume: np.ndarray, concept: str, *, subject: str, affine: np.ndarray,
                 mask: np.ndarray | None = None, to_mni: np.ndarray | None = None,
                 method: str | None = None) -> Heatmap:  # fmt: skip
        """The ensemble heatmap of `concept` for one native volume (X, Y, Z) in percent signal change.

        `mask` (bool, native) limits the map, e.g. to nsdgeneral; values are scaled to [0, 1].
        `method` overrides the localizer's method for this call.
        """
        name = self.check_concept(concept)
        volume = np.asarray(volume, dtype=np.float32)
        used = self.method_for(subject, method)
        if used == "encoding":
            per_model = self._encoding_maps(subject, name, volume.shape, mask)
        else:
            per_model = self._gradcam_maps(volume, name, mask, self.bundles_for(subject))
        ensemble = _unit_scale(np.mean(list(per_model.values()), axis=0), mask)
        search = np.asarray(mask, bool) if mask is not None else None
        return Heatmap(name, subject, ensemble.astype(np.float32), np.asarray(affine), to_mni, per_model, used, search)

    # -- the two methods -------------------------------------------------------------------------

    def _gradcam_maps(self, volume: np.ndarray, name: str, mask: np.ndarray | None, bundles) -> dict[int, np.ndarray]:
        text = self.text_embedding(name)
        per_model = {}
        for bundle in bundles:
            operator = bundle.preprocessor.operator(volume.shape)
            patch_tokens = operator.tokens(volume[None])  # (1, N, r³)
            scores = gradcam_patches(bundle, bundle.tokens(patch_tokens), text)  # (N,)
            weighted = operator.patch_values_to_native(scores[None].double())[0]  # Pᵀ of the broadcast scores
            reach = operator.patch_values_to_native(torch.ones(1, len(scores), dtype=torch.float64))[0]
            native = torch.where(reach > 0, weighted / reach.clamp_min(1e-12), torch.zeros_like(weighted)).numpy()
            per_model[bundle.config.patch_size] = _unit_scale(native, mask)
        return per_model

    def _encoding_maps(self, subject: str, name: str, shape: tuple, mask: np.ndarray | None) -> dict[int, np.ndarray]:
        statistics = self._subject_statistics(subject)
        key = (subject, name)
        if key not in self._maps:
            # the regressors: the whole vocabulary (one fit gives every concept's map), else the concept alone
            names = self.vocabulary if self.vocabulary is not None else [name]
            fitted = [stats.concept_maps(self._texts(names), self.ridge) for stats in statistics]  # per bundle (K, S)
            for k, other in enumerate(names):
                self._maps[(subject, other)] = [weights[k] for weights in fitted]
        per_model = {}
        for bundle, stats, weights in zip(self.bundles_for(subject), statistics, self._maps[key]):
            native = np.zeros(int(np.prod(shape)), np.float64)
            native[stats.voxels] = weights.clamp_min(0).numpy()  # where activity rises with the concept
            per_model[bundle.config.patch_size] = _unit_scale(native.reshape(shape), mask)
        return per_model

    def _subject_statistics(self, subject: str) -> list[EncodingStatistics] | None:
        if subject in self._statistics:
            return self._statistics[subject]
        with self._fitting:
            if subject not in self._statistics:
                self._statistics[subject] = self._load_or_fit(subject)
            return self._statistics[subject]

    def _load_or_fit(self, subject: str) -> list[EncodingStatistics] | None:
        if self.references is None:
            return None
        bundles = self.bundles_for(subject)
        stored = self.store.load(subject, bundles, self.references)
        if stored is not None:
            return stored
        reference = self.references(subject)
        if reference is None:
            return None
        fitted = [encoding_statistics(bundle, reference) for bundle in bundles]
        self.store.save(subject, bundles, self.references, fitted)
        return fitted


def _unit_scale(native: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    values = np.where(mask, native, 0.0) if mask is not None else native
    peak = values.max()
    return (values / peak if peak > 0 else values).astype(np.float32)
