"""Image metrics follow the MindEye/Brain-Diffuser protocol."""

from __future__ import annotations

import numpy as np
import pytest

from neurochat.image_metrics import backbone_metrics, pixcorr, resize_images, ssim


def _pair(seed=0, size=48):
    rng = np.random.default_rng(seed)
    truth = (rng.random((4, size, size, 3)) * 255).astype(np.uint8)
    noisy = np.clip(truth.astype(int) + rng.integers(-60, 60, truth.shape), 0, 255).astype(np.uint8)
    return truth, noisy


def test_ssim_matches_scikit_image():
    skimage_metrics = pytest.importorskip("skimage.metrics")
    from skimage.color import rgb2gray

    truth, noisy = _pair()
    reference = np.mean([
        skimage_metrics.structural_similarity(rgb2gray(x), rgb2gray(y), gaussian_weights=True, sigma=1.5,
                                              use_sample_covariance=False, data_range=1.0)
        for x, y in zip(noisy, truth)
    ])  # fmt: skip
    assert ssim(noisy, truth) == pytest.approx(reference, abs=1e-9)
    assert ssim(truth, truth) == pytest.approx(1.0)


def test_pixcorr_at_the_stimulus_resolution():
    truth, noisy = _pair()
    assert pixcorr(truth, truth) == pytest.approx(1.0)
    assert 0.5 < pixcorr(noisy, truth) < 1.0
    small = resize_images(truth, 24)  # a low-resolution reconstruction is upsampled to the stimulus size
    assert pixcorr(small, truth) > 0.3
    shuffled = truth[::-1]
    assert abs(pixcorr(shuffled, truth)) < 0.2


def test_backbone_metrics_are_unavailable_without_weights(tmp_path):
    truth, noisy = _pair()
    assert backbone_metrics(noisy, truth, None) == {name: None for name in ("alexnet2", "alexnet5", "inception", "effnet", "swav")}
    assert set(backbone_metrics(noisy, truth, tmp_path).values()) == {None}
