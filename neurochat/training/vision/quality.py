"""How good the saved demo encoders are, measured on held-out pool pictures (for the manifest)."""

from __future__ import annotations

import numpy as np
import torch

from neurochat.metrics import roc_auc
from neurochat.models.vision import VisionEncoders
from neurochat.training.vision.common import PoolPictures
from neurochat.vocabulary import CONCEPT_NAMES, OBJECTS, SCENES

def vision_quality(encoders: VisionEncoders, pool: PoolPictures, retrieval_size: int = 200) -> dict:
    """How good the (saved and reloaded) demo encoders are, on pictures they were not trained on.

    - `retrieval_*`: among `retrieval_size` pictures and one caption each (its first), how often the
      picture's own caption ranks first (top-5) by cosine, and the reverse; chance is 1/`retrieval_size`.
    - `concept_auc`: per concept name with present and absent pictures, the ROC AUC of
      cos(text_embeddings([name]), image embedding) for telling pictures with the concept from the
      rest — what localization's GradCAM target relies on. Means over objects and scenes.
    - `object_zero_shot_top1`: how often the best-scoring object name is one of the picture's objects.
    - `scene_zero_shot_top1`: how often the best-scoring scene word is the picture's scene.
    - `vae_psnr_db`: mean PSNR of decode(encode(x)) against x (uint8 pixels).
    """
    images = _unit(encoders.image_embeddings(pool.images))  # (N, D)
    n = min(retrieval_size, len(pool))
    captions = _unit(encoders.text_embeddings([caps[0] for caps in pool.captions[:n]]))  # (n, D)
    similarity = images[:n] @ captions.T  # (n pictures, n captions)
    own = torch.arange(n)
    ranks_image_to_text = (similarity > similarity[own, own][:, None]).sum(1)  # how many captions beat its own
    ranks_text_to_image = (similarity > similarity[own, own][None, :]).sum(0)

    names = _unit(encoders.text_embeddings(list(CONCEPT_NAMES)))  # (K, D)
    scores = (images @ names.T).numpy()  # (N, K)
    present = np.array([[name in concepts for name in CONCEPT_NAMES] for concepts in pool.concepts])  # (N, K)
    auc = {name: roc_auc(scores[:, k], present[:, k]) for k, name in enumerate(CONCEPT_NAMES) if 0 < present[:, k].sum() < len(pool)}
    n_objects = len(OBJECTS)
    best_object = scores[:, :n_objects].argmax(1)
    best_scene = scores[:, n_objects:].argmax(1)

    latents = encoders.encode_latents(pool.images)  # (N, C, h, w), scaled
    reconstructions = encoders.decode_latents(latents)
    if reconstructions.shape != pool.images.shape:
        raise ValueError(f"quality check: VAE round trip gives {reconstructions.shape}, pictures are {pool.images.shape}")
    mse = ((reconstructions.astype(np.float64) - pool.images) ** 2).reshape(len(pool), -1).mean(1)
    psnr = 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))

    object_aucs = [auc[o.name] for o in OBJECTS if o.name in auc]
    scene_aucs = [auc[s] for s in SCENES if s in auc]
    number = lambda value: None if value is None else round(float(value), QUALITY_DECIMALS)  # noqa: E731
    return {
        "held_out_pictures": len(pool),
        "retrieval_pictures": n,
        "retrieval_image_to_caption_top1": number((ranks_image_to_text == 0).float().mean()),
        "retrieval_image_to_caption_top5": number((ranks_image_to_text < 5).float().mean()),
        "retrieval_caption_to_image_top1": number((ranks_text_to_image == 0).float().mean()),
        "concept_auc_mean_objects": number(np.mean(object_aucs)) if object_aucs else None,
        "concept_auc_mean_scenes": number(np.mean(scene_aucs)) if scene_aucs else None,
        "concept_auc": {name: number(value) for name, value in auc.items()},
        "object_zero_shot_top1": number(np.mean([OBJECTS[k].name in c for k, c in zip(best_object, pool.concepts)])),
        "scene_zero_shot_top1": number(np.mean([SCENES[k] == c[-1] for k, c in zip(best_scene, pool.concepts)])),
        "vae_psnr_db": number(psnr.mean()),
        "vae_scaled_latent_std": number(latents.std()),
    }


QUALITY_DECIMALS = 4  # quality numbers in the manifest; more digits would be noise


def _unit(embeddings: torch.Tensor) -> torch.Tensor:
    """Unit-length rows, for cosine similarity."""
    return torch.nn.functional.normalize(embeddings, dim=-1)
