"""Training the demo's vision models from scratch on SimNSD pool pictures: a tiny CLIP and a tiny VAE.

The paper's reconstruction path (Sec. 3.2, Eq. 4) needs a CLIP image embedding that conditions
Stable unCLIP, and the Stable Diffusion VAE whose latent the extractor predicts; localization
(Sec. 4.4) needs CLIP text embeddings of concept names. The demo preset keeps that exact
structure at toy scale: a `transformers.CLIPModel` on 64×64 pictures and a `diffusers.AutoencoderKL`
with 4×16×16 latents, trained here on the CPU (`python -m train.vision`), and saved in the same folder
formats as `openai/clip-vit-large-patch14` and `stable-diffusion-2-1-unclip-small`, so the demo
loads through the same code as the paper preset (`neurochat.models.vision.VisionEncoders`).

Training pictures come from the SimNSD pool (`neurochat.sim.pool`), whose ids never meet a SimNSD
tree's, so no fMRI test picture is seen here — as the paper's CLIP and VAE never saw NSD.

The loops run on `accelerate`, so the same code trains on a CPU, one GPU or several: each process
draws its own random batches (seeded by seed and process index) and DDP averages the gradients.

The package, one concern per module: `common` (pool pictures, a run's record, the time budget),
`clip` and `vae` (each model's config, construction and training loop), `folders` (saving in the
standard folder layouts), `quality` (measuring the saved models), `build` (the whole demo build,
part by part, and its manifest).
"""

from neurochat.training.vision.build import PART_RECORDS, VISION_PARTS, finish_demo_vision, train_vision_part
from neurochat.training.vision.clip import (
    CONCEPT_TEMPLATES,
    REQUEST_PHRASES,
    ClipConfig,
    build_clip,
    build_tokenizer,
    image_normalisation,
    multi_positive_contrastive_loss,
    sample_texts,
    tokenizer_corpus,
    train_clip,
)
from neurochat.training.vision.common import LOSS_WINDOW, PoolPictures, TrainingRun, count_parameters
from neurochat.training.vision.folders import (
    CLIP_FOLDER,
    UNCLIP_FOLDER,
    UNCLIP_VISION_SUBFOLDERS,
    image_encoder_from_clip,
    image_processor,
    save_clip_parts,
    save_vae,
    text_encoder_from_clip,
)
from neurochat.training.vision.quality import QUALITY_DECIMALS, vision_quality
from neurochat.training.vision.vae import VaeConfig, VaeWithKl, build_vae, latent_scaling_factor, train_vae, vae_loss

__all__ = [
    "CLIP_FOLDER", "CONCEPT_TEMPLATES", "LOSS_WINDOW", "PART_RECORDS", "QUALITY_DECIMALS", "REQUEST_PHRASES",
    "UNCLIP_FOLDER", "UNCLIP_VISION_SUBFOLDERS", "VISION_PARTS", "ClipConfig", "PoolPictures", "TrainingRun",
    "VaeConfig", "VaeWithKl", "build_clip", "build_tokenizer", "build_vae", "count_parameters", "finish_demo_vision",
    "image_encoder_from_clip", "image_normalisation", "image_processor", "latent_scaling_factor",
    "multi_positive_contrastive_loss", "sample_texts", "save_clip_parts", "save_vae", "text_encoder_from_clip",
    "tokenizer_corpus", "train_clip", "train_vae", "train_vision_part", "vae_loss", "vision_quality",
]  # fmt: skip
