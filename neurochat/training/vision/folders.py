"""Saving the demo CLIP and VAE in the standard folder layouts: a `CLIPModel` folder, and the CLIP and VAE
subfolders of a Stable unCLIP pipeline folder, so the demo loads through the paper preset's code."""

from __future__ import annotations

import shutil
from pathlib import Path

from neurochat.models.bundle import CLIP_DIR, UNCLIP_DIR
from neurochat.models.vision import ClipPreprocessing

CLIP_FOLDER = CLIP_DIR  # the weights layout is named by neurochat.models.bundle
UNCLIP_FOLDER = UNCLIP_DIR
UNCLIP_VISION_SUBFOLDERS = ("vae", "image_encoder", "text_encoder", "tokenizer", "feature_extractor")


def image_processor(preprocessing: ClipPreprocessing):
    """The `CLIPImageProcessor` (config) that does what `preprocessing` does."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(
        size={"shortest_edge": preprocessing.resize_shortest_edge},
        crop_size={"height": preprocessing.crop_height, "width": preprocessing.crop_width},
        image_mean=list(preprocessing.image_mean),
        image_std=list(preprocessing.image_std),
        resample=int(Image.Resampling.BICUBIC),  # as CLIP; ClipPreprocessing's torch bicubic matches it
    )


def image_encoder_from_clip(clip):
    """The unCLIP pipeline's `image_encoder`: CLIP's vision tower + visual projection, same weights.

    Its `image_embeds` equal `clip.get_image_features(...)`, so embeddings predicted in CLIP space
    condition the pipeline as they are.
    """
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    config = CLIPVisionConfig(**{**clip.config.vision_config.to_dict(), "projection_dim": clip.config.projection_dim})
    encoder = CLIPVisionModelWithProjection(config)
    encoder.vision_model.load_state_dict(clip.vision_model.state_dict())
    encoder.visual_projection.load_state_dict(clip.visual_projection.state_dict())
    return encoder.eval()


def text_encoder_from_clip(clip):
    """The unCLIP pipeline's `text_encoder` (a `CLIPTextModel`): CLIP's text tower, same weights."""
    from transformers import CLIPTextModel

    encoder = CLIPTextModel(clip.config.text_config)
    encoder.load_state_dict(clip.text_model.state_dict())  # CLIPModel.text_model is itself a CLIPTextModel
    return encoder.eval()


def save_clip_parts(out: str | Path, clip, tokenizer, preprocessing: ClipPreprocessing) -> Path:
    """Write `out/clip/` (a CLIPModel folder) and the CLIP subfolders of `out/unclip/` (image and text
    encoders, tokenizer, feature extractor); return `out/clip`."""
    out = Path(out)
    clip_dir, unclip_dir = out / CLIP_FOLDER, out / UNCLIP_FOLDER
    _replace_folders([clip_dir] + [unclip_dir / name for name in UNCLIP_VISION_SUBFOLDERS if name != "vae"])
    processor = image_processor(preprocessing)
    clip.save_pretrained(clip_dir)
    tokenizer.save_pretrained(clip_dir)
    processor.save_pretrained(clip_dir)
    image_encoder_from_clip(clip).save_pretrained(unclip_dir / "image_encoder")
    text_encoder_from_clip(clip).save_pretrained(unclip_dir / "text_encoder")
    tokenizer.save_pretrained(unclip_dir / "tokenizer")
    processor.save_pretrained(unclip_dir / "feature_extractor")
    return clip_dir


def save_vae(out: str | Path, vae) -> Path:
    """Write `out/unclip/vae/`; return it."""
    folder = Path(out) / UNCLIP_FOLDER / "vae"
    _replace_folders([folder])
    vae.save_pretrained(folder)
    return folder


def _replace_folders(folders: list[Path]) -> None:
    """Only the folders a save owns are replaced (no stale weight files from an earlier layout); the
    unCLIP UNet, schedulers, image normaliser and `model_index.json` are the reconstruction step's."""
    for folder in folders:
        if folder.exists():
            shutil.rmtree(folder)
