"""Image metrics of the reconstruction evaluation (paper App. C.1, the MindEye/Brain-Diffuser protocol).

- PixCorr: Pearson correlation of the pixels of a reconstruction and its stimulus, at the
  stimulus's resolution (the paper downsamples 512 px reconstructions to NSD's 425 px).
- SSIM: structural similarity of the grey-scale images at that resolution, with a Gaussian window
  (σ = 1.5), as MindEye computes it with scikit-image.
- CLIP: two-way identification of CLIP image embeddings of reconstructions vs stimuli, with the
  preset's CLIP.
- AlexNet(2), AlexNet(5), Inception, EffNet-B, SwAV need those networks' weights, which are not
  on these machines: they are computed when the user provides TorchScript exports of the feature
  extractors in a local folder (`backbone_metrics`), otherwise reported as unavailable (None),
  never invented.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from neurochat.metrics import pearson_matrix, two_way_identification

SSIM_SIGMA = 1.5  # Gaussian window of Wang et al. / scikit-image's gaussian_weights=True
SSIM_K1, SSIM_K2 = 0.01, 0.03
BACKBONES = ("alexnet2", "alexnet5", "inception", "effnet", "swav")
# identification metrics (higher is better) vs distances (lower is better), as in Table 2
BACKBONE_IS_DISTANCE = {"alexnet2": False, "alexnet5": False, "inception": False, "effnet": True, "swav": True}


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, H, W, 3) → uint8 (n, size, size, 3), bilinear."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((size, size), Image.Resampling.BILINEAR)) for im in images])


def pixcorr(reconstructions: np.ndarray, stimuli: np.ndarray) -> float:
    """Mean per-image Pearson correlation of pixels, at the stimuli's resolution."""
    recon = resize_images(reconstructions, stimuli.shape[1]).reshape(len(stimuli), -1)
    return float(np.mean(np.diag(pearson_matrix(recon, stimuli.reshape(len(stimuli), -1)))))


def _grey(images: np.ndarray) -> np.ndarray:
    """uint8 RGB → float grey in [0, 1] (ITU-R 601 luma, as skimage.color.rgb2gray)."""
    rgb = images.astype(np.float64) / 255.0
    return rgb @ np.array([0.2125, 0.7154, 0.0721])


def ssim(reconstructions: np.ndarray, stimuli: np.ndarray) -> float:
    """Mean grey-scale SSIM with a Gaussian window, at the stimuli's resolution."""
    a = _grey(resize_images(reconstructions, stimuli.shape[1]))
    b = _grey(stimuli)
    c1, c2 = (SSIM_K1 * 1.0) ** 2, (SSIM_K2 * 1.0) ** 2  # data range 1

    def blur(x):
        return ndimage.gaussian_filter(x, sigma=(0, SSIM_SIGMA, SSIM_SIGMA), truncate=3.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    value = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    border = int(3.5 * SSIM_SIGMA + 0.5)  # scikit-image averages away from the window's reach of the edges
    return float(value[:, border:-border, border:-border].mean())


def clip_two_way(reconstructions: np.ndarray, stimuli: np.ndarray, vision) -> float:
    """Two-way identification of CLIP image embeddings (reconstruction i vs stimulus i and j)."""
    recon = np.asarray(vision.image_embeddings(reconstructions))
    truth = np.asarray(vision.image_embeddings(stimuli))
    return two_way_identification(recon, truth)


def backbone_metrics(reconstructions: np.ndarray, stimuli: np.ndarray, weights_dir: str | Path | None) -> dict:
    """AlexNet(2)/(5), Inception, EffNet-B, SwAV from user-provided TorchScript feature extractors.

    `weights_dir/<name>.pt` is a TorchScript module mapping float (B, 3, H, W) images in [0, 1] to
    a feature tensor (B, ...) — e.g. torchvision's AlexNet cut after its 2nd or 5th layer, exported
    with `torch.jit.trace` on a machine that has torchvision. Missing files give None.
    """
    results: dict = {name: None for name in BACKBONES}
    if weights_dir is None:
        return results
    for name in BACKBONES:
        path = Path(weights_dir) / f"{name}.pt"
        if not path.exists():
            continue
        module = torch.jit.load(str(path), map_location="cpu").eval()
        with torch.no_grad():
            features = [module(torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0).reshape(len(x), -1).numpy()
                        for x in (reconstructions, stimuli)]  # fmt: skip
        if BACKBONE_IS_DISTANCE[name]:
            # mean correlation distance between each reconstruction and its stimulus
            results[name] = float(np.mean(1 - np.diag(pearson_matrix(features[0], features[1]))))
        else:
            results[name] = two_way_identification(features[0], features[1])
    return results
