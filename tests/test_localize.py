"""Concept localization and ablation: hooks, adjoint placement, voxel sets, clear errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from neurochat.ablate import ablate, ablation_mask
from neurochat.data import build_preprocessor
from neurochat.errors import ConfigError
from neurochat.errors import DataError
from neurochat.encoding import EncodingStatistics, dataset_references
from neurochat.localize import ConceptError, ConceptLocalizer, Heatmap, gradcam_patches
from neurochat.models.extractor import ExtractorBundle, ExtractorConfig, FMRIExtractor, token_coordinates, token_count
from neurochat.nsd import NSDDataset


class StubText:
    """Stands in for VisionEncoders' text side: a fixed random embedding per text."""

    def text_embeddings(self, texts):
        return torch.stack([torch.randn(8, generator=torch.Generator().manual_seed(hash(t) % 2**31)) for t in texts])


def _bundle(preprocessor, seed=0) -> ExtractorBundle:
    torch.manual_seed(seed)
    config = ExtractorConfig(layout="vit3d", patch_size=preprocessor.config.patch_size, n_tokens=token_count(preprocessor, "vit3d"),
                             hidden=24, layers=3, heads=2, head_hidden=16, clip_dim=8, latent_shape=(2, 4, 4))  # fmt: skip
    return ExtractorBundle(FMRIExtractor(config, token_coordinates(preprocessor, "vit3d")).eval(), preprocessor)


@pytest.fixture(scope="module")
def setup(sim_root):
    data = NSDDataset(sim_root)
    bundles = [_bundle(build_preprocessor(data, r), seed=r) for r in (5, 4, 3)]
    volume = data.read_trial("subj02", 0)
    mask = data.nsdgeneral("subj02") > 0
    return data, bundles, volume, mask


def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())


def test_ensemble_heatmap_lives_in_the_mask_and_leaves_no_hooks(setup):
    data, bundles, volume, mask = setup
    localizer = ConceptLocalizer(bundles, StubText(), vocabulary=["cat", "dog"])  # no recordings: GradCAM
    with torch.no_grad():  # as in a Gradio handler: localization enables gradients itself
        heatmap = localizer.localize(volume, "cat", subject="subj02", affine=data.affine("subj02"), mask=mask)
    assert heatmap.native.shape == volume.shape and heatmap.native.max() == pytest.approx(1.0)
    assert np.all(heatmap.native[~mask] == 0)
    assert set(heatmap.per_model) == {5, 4, 3}
    assert all(_hooks(b.model) == 0 for b in bundles)
    assert heatmap.to_nifti().shape == volume.shape
    assert heatmap.method == "gradcam"


def _statistics_from(rows: np.ndarray, embeddings: np.ndarray) -> EncodingStatistics:
    """EncodingStatistics of explicit recordings (n, S) and unit embeddings (n, D), as encoding_statistics keeps them."""
    x = torch.as_tensor(rows, dtype=torch.float64)
    z = torch.as_tensor(embeddings, dtype=torch.float64)
    xc, zc = x - x.mean(0), z - z.mean(0)
    return EncodingStatistics(np.arange(rows.shape[1]), xc.pow(2).mean(0).sqrt(), xc.T @ zc / len(x), zc.T @ zc / len(x))


def test_encoding_maps_equal_a_ridge_regression_on_the_concept_evidence():
    rng = np.random.default_rng(0)
    n, voxels, dim = 400, 30, 6
    embeddings = rng.normal(size=(n, dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    texts = rng.normal(size=(3, dim))
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    evidence = embeddings @ texts.T  # (n, K): cos(ẑ, t) per concept
    pattern = np.zeros(voxels)
    pattern[:5] = 2.0  # the voxels of concept 0
    rows = evidence[:, :1] * pattern + 0.3 * rng.normal(size=(n, voxels))
    maps = _statistics_from(rows, embeddings).concept_maps(torch.as_tensor(texts), ridge=0.1).numpy()
    # the same ridge regression written out on explicit standardized regressors
    z = (evidence - evidence.mean(0)) / evidence.std(0)
    xc = rows - rows.mean(0)
    direct = np.linalg.solve(z.T @ z / n + 0.1 * np.eye(3), z.T @ xc / n) / xc.std(0)
    np.testing.assert_allclose(maps, direct, rtol=1e-6, atol=1e-9)
    # kept in the span of the vocabulary alone (what a bundle ships), its concepts' maps are the same
    projected = _statistics_from(rows, embeddings).projected(torch.as_tensor(texts))
    assert projected.cross.shape == (voxels, 3)
    np.testing.assert_allclose(projected.concept_maps(torch.as_tensor(texts), ridge=0.1).numpy(), maps, rtol=1e-9, atol=1e-12)
    assert maps[0, :5].min() > 5 * np.abs(maps[0, 5:]).max()  # concept 0's voxels stand out in its map
    assert np.abs(maps[1:, :5]).max() < maps[0, :5].min() / 5  # and not in the other concepts' maps


def test_encoding_maps_are_fitted_on_the_subject_s_own_recordings(setup):
    data, bundles, volume, mask = setup
    references = dataset_references(data, bundles)
    reference = references("subj02")
    table = data.trials("subj02")
    assert len(reference.rows) == (~table.shared).sum()  # the training trials, not the shared test images
    assert references("upload.nii.gz#1") is None
    localizer = ConceptLocalizer(bundles, StubText(), vocabulary=["cat", "dog"], references=references)
    with torch.no_grad():
        heatmap = localizer.localize(volume, "cat", subject="subj02", affine=data.affine("subj02"), mask=mask)
    assert heatmap.method == "encoding"
    assert heatmap.native.max() == pytest.approx(1.0) and np.all(heatmap.native[~mask] == 0)
    assert set(heatmap.per_model) == {5, 4, 3}
    # the map belongs to the subject: another of its recordings gets the same map
    other = localizer.localize(data.read_trial("subj02", 1), "cat", subject="subj02", affine=data.affine("subj02"), mask=mask)
    np.testing.assert_array_equal(other.native, heatmap.native)
    gradcam = localizer.localize(volume, "cat", subject="subj02", affine=data.affine("subj02"), mask=mask, method="gradcam")
    assert gradcam.method == "gradcam" and not np.array_equal(gradcam.native, heatmap.native)
    # an uploaded volume has no recordings: GradCAM, and asking for an encoding map says why not
    assert localizer.localize(volume, "cat", subject="upload.nii.gz#1", affine=np.eye(4), mask=mask).method == "gradcam"
    with pytest.raises(DataError, match="no recordings of upload.nii.gz#1 .* method='gradcam'"):
        localizer.localize(volume, "cat", subject="upload.nii.gz#1", affine=np.eye(4), method="encoding")
    with pytest.raises(DataError, match="localization method 'saliency'"):
        localizer.localize(volume, "cat", subject="subj02", affine=np.eye(4), method="saliency")


def test_hooks_are_removed_when_gradcam_raises(setup):
    _, bundles, volume, _ = setup
    bundle = bundles[0]
    tokens = bundle.preprocessor(volume[None])
    with pytest.raises(Exception):
        gradcam_patches(bundle, tokens, torch.zeros(3))  # wrong embedding size: fails inside the backward pass
    assert _hooks(bundle.model) == 0


def test_adjoint_places_a_patch_score_on_exactly_that_patch_s_voxels(setup):
    data, bundles, volume, _ = setup
    preprocessor = bundles[0].preprocessor
    operator = preprocessor.operator(volume.shape)
    scores = torch.zeros(1, preprocessor.n_patches, dtype=torch.float64)
    scores[0, 7] = 1.0
    native = operator.patch_values_to_native(scores)[0].numpy()
    # the voxels that receive weight are exactly the native voxels whose tokens land in patch 7
    one_hot_tokens = torch.zeros(1, preprocessor.n_patches, preprocessor.token_dim, dtype=torch.float64)
    one_hot_tokens[0, 7] = 1.0
    footprint = operator.adjoint(one_hot_tokens)[0].numpy() > 0
    np.testing.assert_array_equal(native > 0, footprint)
    assert footprint.any() and footprint.sum() < volume.size / 10


def test_unknown_and_empty_concepts_get_clear_errors(setup):
    data, bundles, volume, mask = setup
    localizer = ConceptLocalizer(bundles, StubText(), vocabulary=["cat", "dog", "teddy bear"])
    with pytest.raises(ConceptError, match="which concept"):
        localizer.localize(volume, "  ", subject="subj02", affine=np.eye(4))
    with pytest.raises(ConceptError, match=r"'teddy' is not a concept this model knows. Did you mean 'teddy bear'"):
        localizer.localize(volume, "teddy", subject="subj02", affine=np.eye(4))
    assert localizer.check_concept('"Cat"') == "cat"


def test_ablation_changes_only_the_chosen_voxels_and_keeps_the_original(setup):
    data, bundles, volume, mask = setup
    rng = np.random.default_rng(0)
    maps = [Heatmap(c, "subj02", np.where(mask, rng.random(volume.shape), 0).astype(np.float32), np.eye(4), search=mask)
            for c in ("cat", "dog")]  # fmt: skip
    original = volume.copy()
    ablated, removed = ablate(volume, maps, fraction=0.1)
    np.testing.assert_array_equal(volume, original)  # untouched
    changed = ablated != volume
    assert np.all(removed[changed]) and np.all(ablated[removed] == 0)
    assert np.all(removed <= mask)  # only inside the search mask
    single = ablation_mask(maps[:1], 0.1)
    assert single.sum() == round(0.1 * mask.sum())
    assert removed.sum() > single.sum()  # two concepts remove the union
    with pytest.raises(ConfigError, match="q = 0%"):
        ablation_mask(maps, 0.0)


def test_q_is_a_share_of_the_search_region_not_of_the_lit_voxels(setup):
    _, _, volume, mask = setup
    rng = np.random.default_rng(1)
    half_lit = np.where(mask & (rng.random(volume.shape) < 0.5), rng.random(volume.shape), 0).astype(np.float32)
    heatmap = Heatmap("cat", "subj02", half_lit, np.eye(4), search=mask)
    top = heatmap.top_voxels(0.1)
    assert top.sum() == round(0.1 * mask.sum())  # 10% of nsdgeneral, though only half of it is lit
    assert half_lit[top].min() >= half_lit[mask & ~top].max()  # the highest ones
    sparse = np.where(mask & (rng.random(volume.shape) < 0.04), 1.0, 0).astype(np.float32)
    assert np.array_equal(Heatmap("cat", "subj02", sparse, np.eye(4), search=mask).top_voxels(0.1), sparse > 0)  # never a 0


def test_mni_resampling_of_a_heatmap(setup):
    data, _, volume, mask = setup
    import json

    key = json.loads((data.root / "simnsd/simnsd.json").read_text())
    to_mni = np.array(key["subjects"]["subj02"]["native_to_mni"])
    native = np.zeros(volume.shape, np.float32)
    native[mask] = 1.0
    image = Heatmap("cat", "subj02", native, data.affine("subj02"), to_mni).to_mni_nifti()
    values = np.asarray(image.dataobj)
    ijk = np.argwhere(values > 0.5)
    xyz = ijk @ image.affine[:3, :3].T + image.affine[:3, 3]
    assert values.shape == (99, 117, 95)
    assert xyz[:, 1].mean() < -50  # nsdgeneral is posterior visual cortex in MNI space


def test_localization_evaluation_scores_both_methods_against_the_answer_key(setup):
    from neurochat.evaluate.localize import evaluate_localization
    from neurochat.sim.truth import AnswerKey

    data, bundles, _, _ = setup
    key = AnswerKey(data.root)
    localizer = ConceptLocalizer(bundles, StubText(), key.concepts, references=dataset_references(data, bundles))
    result = evaluate_localization(data, localizer, key, max_recordings=3, log=lambda *_: None)
    assert result["method"] == "encoding" and result["n"] > 0
    for scores in (result, result["gradcam"]):
        assert 0.0 <= scores["ensemble"] <= 1.0
        assert set(scores["single"]) == {"5", "4", "3"}
    assert 0.3 < result["random"] < 0.7


class CountingReferences:
    """A dataset's reference recordings that count how often they are read (once per fit)."""

    def __init__(self, data, bundles):
        self.inner, self.reads = dataset_references(data, bundles), 0

    def __call__(self, subject):
        self.reads += 1
        return self.inner(subject)

    def fingerprint(self, subject):
        return self.inner.fingerprint(subject)

    def portable_fingerprint(self, subject):
        return self.inner.portable_fingerprint(subject)


def test_fitted_statistics_are_cached_on_disk_and_read_back(setup, tmp_path):
    data, bundles, volume, mask = setup
    references = CountingReferences(data, bundles)
    maps = []
    for _ in range(2):  # two processes' worth of localizers sharing one cache folder
        localizer = ConceptLocalizer(bundles, StubText(), ["cat", "dog"], references=references, cache=tmp_path)
        maps.append(localizer.localize(volume, "dog", subject="subj02", affine=np.eye(4), mask=mask).native)
    assert references.reads == 1 and len(list(tmp_path.glob("subj02_r*.npz"))) == 3
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-6)


def test_statistics_shipped_with_a_bundle_serve_another_clone(setup, tmp_path):
    """SimNSD subjects' statistics written into a bundle are read by a localizer anywhere, without a fit."""
    data, bundles, volume, mask = setup
    references = CountingReferences(data, bundles)
    fitting = ConceptLocalizer(bundles, StubText(), ["cat", "dog"], references=references)
    fitted = fitting.localize(volume, "dog", subject="subj02", affine=np.eye(4), mask=mask).native
    shipped = fitting.ship(tmp_path / "encoding_maps", "subj02", keep=mask)  # the voxels where maps are searched
    assert len(shipped) == 3 and references.reads == 1

    # another machine: an empty disk cache, the bundle's folder
    reading = ConceptLocalizer(bundles, StubText(), ["cat", "dog"], references=references,
                               cache=tmp_path / "cache", shipped=tmp_path / "encoding_maps")  # fmt: skip
    read = reading.localize(volume, "dog", subject="subj02", affine=np.eye(4), mask=mask).native
    assert references.reads == 1  # no fit: the shipped statistics served
    np.testing.assert_allclose(read, fitted, atol=5e-3)  # float16 covariances in the bundle
    assert np.corrcoef(read.ravel(), fitted.ravel())[0, 1] > 0.99999

    # other weights (a retrained extractor) never read them: they miss and fit again
    other = _bundle(bundles[0].preprocessor, seed=99)
    ConceptLocalizer([other], StubText(), ["cat", "dog"], references=references,
                     shipped=tmp_path / "encoding_maps").localize(volume, "dog", subject="subj02", affine=np.eye(4), mask=mask)  # fmt: skip
    assert references.reads == 2
    with pytest.raises(DataError, match="no recordings of upload.nii.gz#1 .* nothing to ship"):
        fitting.ship(tmp_path / "x", "upload.nii.gz#1")


def test_a_background_fit_is_shared_with_the_first_localization(setup):
    """prepare() fits in a thread; a localization asked meanwhile waits for it instead of fitting again."""
    data, bundles, volume, mask = setup

    class SlowCountingReferences:
        def __init__(self):
            self.inner, self.reads = dataset_references(data, bundles), 0

        def __call__(self, subject):
            self.reads += 1
            time.sleep(0.3)  # a fit that is still running when the user asks
            return self.inner(subject)

    references = SlowCountingReferences()
    localizer = ConceptLocalizer(bundles, StubText(), ["cat", "dog"], references=references)
    thread = localizer.prepare("subj02")
    assert thread is not None and localizer.prepare("subj02") is None  # one fit per subject, not one per click
    heatmap = localizer.localize(volume, "cat", subject="subj02", affine=np.eye(4), mask=mask)
    thread.join(timeout=60)
    assert heatmap.method == "encoding" and references.reads == 1
    assert localizer.prepare("subj02") is None  # already fitted
    # nothing to fit for GradCAM-only localizers, nor for an upload (no recordings: the thread finds none)
    assert ConceptLocalizer(bundles, StubText(), ["cat"], method="gradcam", references=references).prepare("subj02") is None
    upload = localizer.prepare("upload.nii.gz#1")
    upload.join(timeout=60)
    assert localizer.localize(volume, "cat", subject="upload.nii.gz#1", affine=np.eye(4), mask=mask).method == "gradcam"


def test_gradcam_keeps_its_own_forward_while_another_thread_runs_the_model(setup):
    """The app runs a β change beside a localization: the other thread's forward passes through the same
    hooked layer, and must neither replace GradCAM's activation nor leave gradients on the shared weights."""
    import threading

    _, bundles, volume, _ = setup
    bundle = bundles[0]
    tokens = bundle.preprocessor(volume[None])
    text = torch.randn(8, generator=torch.Generator().manual_seed(0))
    alone = gradcam_patches(bundle, tokens, text)
    other_tokens = torch.randn_like(tokens)
    stop = threading.Event()

    def other_forwards():
        with torch.no_grad():
            while not stop.is_set():
                bundle.model(other_tokens)

    other = threading.Thread(target=other_forwards)
    other.start()
    try:
        beside = [gradcam_patches(bundle, tokens, text) for _ in range(20)]
    finally:
        stop.set()
        other.join()
    for scores in beside:
        torch.testing.assert_close(scores, alone)
    assert all(parameter.grad is None for parameter in bundle.model.parameters())
