"""The frozen vision models the fMRI extractor learns to predict: CLIP embeddings and VAE latents.

The paper (Sec. 3.2) maps fMRI to two targets: ẑ_c, the CLIP ViT-L/14 image embedding that
conditions Stable unCLIP, and ẑ_v, the Stable Diffusion VAE latent of the picture. Reconstruction
(Eq. 4) decodes them again, and concept localization (Sec. 4.4) uses the CLIP *text* embedding of a
concept as its GradCAM target. `VisionEncoders` gives all four operations behind one object, for
both presets:

    paper   clip_dir   = openai/clip-vit-large-patch14            (transformers CLIPModel)
            unclip_dir = stabilityai/stable-diffusion-2-1-unclip-small   (its vae/ is the VAE)
    demo    clip_dir   = checkpoints/demo/clip     tiny CLIPModel trained on SimNSD pool pictures
            unclip_dir = checkpoints/demo/unclip   tiny AutoencoderKL in vae/

Everything loads from local folders only (`local_files_only=True`); nothing is downloaded.

The image embedding is CLIP's *projected* image embedding, not normalised: exactly what
`StableUnCLIPImg2ImgPipeline` computes as `image_encoder(pixel_values).image_embeds` for its
conditioning, so a predicted ẑ_c can be handed to the pipeline as `image_embeds` unchanged.
CLIP preprocessing is done here in torch (the image processors' torch backend needs torchvision,
which does not import beside our CPU torch wheel) and follows the folder's
`preprocessor_config.json`: shortest side resized with bicubic interpolation, centre crop, scale to
[0, 1], normalise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from neurochat.errors import ConfigError, DataError
from neurochat.presets import Preset

PREPROCESSOR_CONFIG = "preprocessor_config.json"  # written by CLIPImageProcessor.save_pretrained
VAE_SUBFOLDER = "vae"  # where a diffusers pipeline folder keeps its AutoencoderKL
DEFAULT_BATCH_SIZE = 32  # images per forward pass; bounds memory for ViT-L/14 at 224² and the VAE at 768²


@dataclass(frozen=True)
class ClipPreprocessing:
    """CLIP's image preprocessing, read from a `preprocessor_config.json`."""

    resize_shortest_edge: int  # the shortest side is resized to this (aspect ratio kept)
    crop_height: int  # then a centre crop of this size is the model's input
    crop_width: int
    image_mean: tuple[float, float, float]  # per-channel normalisation of [0, 1] pixel values
    image_std: tuple[float, float, float]

    @classmethod
    def from_folder(cls, folder: str | Path) -> "ClipPreprocessing":
        """Read the preprocessing of a CLIPModel or image-encoder folder.

        Both the old (`"size": 224, "crop_size": 224`) and the current
        (`"size": {"shortest_edge": 224}, "crop_size": {"height": 224, "width": 224}`) forms are read.
        """
        path = Path(folder) / PREPROCESSOR_CONFIG
        if not path.exists():
            raise ConfigError(
                f"{path} is missing: a CLIP folder needs the image processor's configuration "
                "(CLIPImageProcessor.save_pretrained writes it); copy it from the model's original folder"
            )
        config = json.loads(path.read_text())
        if not (config.get("do_resize", True) and config.get("do_center_crop", True) and config.get("do_normalize", True)):
            raise ConfigError(f"{path}: only CLIP's resize → centre crop → normalise preprocessing is supported")
        size, crop = config["size"], config["crop_size"]
        shortest_edge = size if isinstance(size, int) else size["shortest_edge"]
        crop_height, crop_width = (crop, crop) if isinstance(crop, int) else (crop["height"], crop["width"])
        return cls(shortest_edge, crop_height, crop_width, tuple(config["image_mean"]), tuple(config["image_std"]))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """float (B, 3, H, W) in [0, 1] → normalised CLIP pixel values (B, 3, crop_height, crop_width)."""
        height, width = images.shape[-2:]
        short, long = min(height, width), max(height, width)
        # the image processors' rule: the short side becomes `resize_shortest_edge`, the long side is truncated
        new_long = int(self.resize_shortest_edge * long / short)
        new_size = (self.resize_shortest_edge, new_long) if height <= width else (new_long, self.resize_shortest_edge)
        if new_size != (height, width):
            # antialiased bicubic (a = -0.5) is what PIL's BICUBIC does, which the image processors use
            images = F.interpolate(images, size=new_size, mode="bicubic", antialias=True, align_corners=False)
            images = images.clamp(0.0, 1.0)  # bicubic overshoots; PIL clips to uint8
        top = (new_size[0] - self.crop_height) // 2
        left = (new_size[1] - self.crop_width) // 2
        images = images[..., top : top + self.crop_height, left : left + self.crop_width]  # (B, 3, ch, cw)
        mean = torch.tensor(self.image_mean, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(self.image_std, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
        return (images - mean) / std


def images_to_unit_float(images) -> torch.Tensor:
    """uint8 (B, H, W, 3) or float (B, H, W, 3) in [0, 1], numpy or torch → float32 (B, 3, H, W) in [0, 1].

    Raises `DataError` for any other layout or range rather than guessing what was meant.
    """
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise DataError(f"images must be a numpy array or a torch tensor of shape (B, H, W, 3), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise DataError(f"images must have shape (B, H, W, 3) (RGB, channels last), got {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise DataError("images is an empty batch: pass at least one picture")
    if images.dtype == torch.uint8:
        images = images.float() / 255.0
    elif images.is_floating_point():
        images = images.float()
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise DataError(
                f"float images must lie in [0, 1], got values in [{low:.3g}, {high:.3g}]: "
                "pass uint8 pictures or divide by 255"
            )
    else:
        raise DataError(f"images must be uint8 or float in [0, 1], got dtype {images.dtype}")
    return images.permute(0, 3, 1, 2).contiguous()  # (B, H, W, 3) → (B, 3, H, W)


def _require_folder(folder: Path, message: str) -> None:
    """Fail with `message` unless `folder` holds a model (its config.json)."""
    if not (Path(folder) / "config.json").exists():
        raise ConfigError(message)


class VisionEncoders:
    """CLIP image/text embeddings and VAE latents, loaded from local folders (see module docstring).

    Parameters
    ----------
    clip_dir : path
        A transformers `CLIPModel` folder with its tokenizer and `preprocessor_config.json`.
    unclip_dir : path
        A diffusers Stable unCLIP folder; only its `vae/` (an `AutoencoderKL`) is loaded here.
    image_size : int, optional
        Resolution the VAE works at (paper: 768, the decoder's own; demo: 64). Default: the VAE config's
        `sample_size`.
    vae : AutoencoderKL, optional
        An already loaded VAE to use instead of loading `unclip_dir/vae` again (the explorer shares the
        decoder pipeline's); it keeps its own device and precision.
    device, dtype
        Where and in which precision the models run; outputs are always float32 on the CPU.
    batch_size : int
        Images per forward pass.

    Attributes
    ----------
    clip_dim : int
        Size of the projected CLIP embedding (768 for ViT-L/14).
    latent_shape : tuple of int
        (C, h, w) of one VAE latent at `image_size` (4, 96, 96 for the paper; 4, 16, 16 for the demo).
    image_size : int
    scaling_factor : float
        The VAE's latent scaling (SD 2.1: 0.18215); latents here are always in scaled units.
    clip, tokenizer, vae
        The loaded models, in eval mode, for callers that need gradients (GradCAM in localization);
        this class's own methods run under `torch.no_grad()`.
    """

    def __init__(
        self,
        clip_dir: str | Path,
        unclip_dir: str | Path,
        *,
        image_size: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = DEFAULT_BATCH_SIZE,
        vae=None,
    ):
        # heavy imports here, so that `import neurochat.models.vision` stays cheap
        from diffusers import AutoencoderKL
        from transformers import CLIPModel, CLIPTokenizer

        self.clip_dir, self.unclip_dir = Path(clip_dir), Path(unclip_dir)
        _require_folder(self.clip_dir, f"the CLIP folder is missing or incomplete at {self.clip_dir} (no config.json)")
        vae_dir = self.unclip_dir / VAE_SUBFOLDER
        if vae is None:
            _require_folder(vae_dir, f"the Stable unCLIP VAE is missing or incomplete at {vae_dir} (no config.json)")
        self.device, self.dtype, self.batch_size = torch.device(device), dtype, batch_size

        self.clip = CLIPModel.from_pretrained(self.clip_dir, local_files_only=True, dtype=dtype).to(self.device).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(self.clip_dir, local_files_only=True)
        self.preprocessing = ClipPreprocessing.from_folder(self.clip_dir)
        if vae is None:
            vae = AutoencoderKL.from_pretrained(self.unclip_dir, subfolder=VAE_SUBFOLDER, local_files_only=True, dtype=dtype)
            vae.to(self.device)
        self.vae = vae.eval()

        self.clip_dim = int(self.clip.config.projection_dim)
        self.image_size = int(image_size or self.vae.config.sample_size)
        # each down block but the last halves the resolution (SD: 4 blocks → factor 8, 768² → 96²)
        downsample = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if self.image_size % downsample:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of the VAE's downsampling factor {downsample}")
        self.latent_shape = (int(self.vae.config.latent_channels), self.image_size // downsample, self.image_size // downsample)
        self.scaling_factor = float(self.vae.config.scaling_factor)

    @classmethod
    def from_preset(cls, preset: Preset, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, **kwargs) -> "VisionEncoders":
        """The encoders of `preset` (its `clip_dir`, `unclip_dir` and `image_size`; a preset without an
        `image_size` works at the decoder's native one, `native_image_size`).

        Raises `ConfigError` with `preset.missing(...)` (which folder, how to get it) when a folder is absent.
        """
        from neurochat.models.unclip import native_image_size

        _require_folder(preset.clip_dir, preset.missing("clip"))
        _require_folder(preset.unclip_dir / VAE_SUBFOLDER, preset.missing("unclip"))
        image_size = preset.image_size or native_image_size(preset.unclip_dir)
        return cls(preset.clip_dir, preset.unclip_dir, image_size=image_size, device=device, dtype=dtype, **kwargs)

    # -----------------------------------------------------------------------------------------
    # CLIP

    @torch.no_grad()
    def image_embeddings(self, images) -> torch.Tensor:
        """Projected CLIP image embeddings ẑ_c, the unCLIP conditioning (paper Sec. 3.2).

        Parameters
        ----------
        images : uint8 (B, H, W, 3), or float (B, H, W, 3) in [0, 1]; numpy or torch

        Returns
        -------
        torch.Tensor
            float32 (B, clip_dim), not normalised: equal to the unCLIP pipeline's
            `image_encoder(pixel_values).image_embeds`.
        """
        images = images_to_unit_float(images)  # (B, 3, H, W)
        outputs = []
        for chunk in images.split(self.batch_size):
            pixel_values = self.preprocessing(chunk.to(self.device)).to(self.dtype)  # (b, 3, crop, crop)
            # transformers 5: get_image_features returns an output object; the projection is its pooler_output
            outputs.append(self.clip.get_image_features(pixel_values=pixel_values).pooler_output.float().cpu())
        return torch.cat(outputs)  # (B, clip_dim)

    @torch.no_grad()
    def text_embeddings(self, texts: list[str]) -> torch.Tensor:
        """Projected CLIP text embeddings, e.g. of a concept name for localization (Sec. 4.4).

        Parameters
        ----------
        texts : list of str
            Non-empty texts; longer ones are truncated to the tokenizer's `model_max_length`.

        Returns
        -------
        torch.Tensor
            float32 (B, clip_dim), not normalised (compare with cosine similarity).
        """
        if isinstance(texts, str) or not isinstance(texts, (list, tuple)):
            raise DataError(f"texts must be a list of strings, got {type(texts).__name__}: wrap one text as [text]")
        if not texts:
            raise DataError("texts is empty: pass at least one text")
        bad = [text for text in texts if not isinstance(text, str) or not text.strip()]
        if bad:
            raise DataError(f"every text must be a non-empty string, got {bad[:3]!r}")
        outputs = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(
                list(texts[start : start + self.batch_size]),
                padding=True,
                truncation=True,
                max_length=self.tokenizer.model_max_length,
                return_tensors="pt",
            ).to(self.device)
            features = self.clip.get_text_features(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask)
            outputs.append(features.pooler_output.float().cpu())  # (b, clip_dim)
        return torch.cat(outputs)

    # -----------------------------------------------------------------------------------------
    # VAE

    @torch.no_grad()
    def encode_latents(self, images) -> torch.Tensor:
        """VAE latents ẑ_v of square pictures, in scaled units (× `vae.config.scaling_factor`).

        Pictures are resized to `image_size` and mapped to [-1, 1], as Stable Diffusion's VAE expects.
        The posterior's mode is taken, so the same picture always gives the same latent.

        Parameters
        ----------
        images : uint8 (B, H, W, 3) with H == W, or float in [0, 1]

        Returns
        -------
        torch.Tensor
            float32 (B, C, h, w) = (B, *latent_shape)
        """
        images = images_to_unit_float(images)  # (B, 3, H, W)
        height, width = images.shape[-2:]
        if height != width:
            raise DataError(
                f"the VAE takes square pictures ({self.image_size}×{self.image_size} after resizing), got {height}×{width}: "
                "crop them first"
            )
        outputs = []
        for chunk in images.split(self.batch_size):
            chunk = chunk.to(self.vae.device)
            if height != self.image_size:
                chunk = F.interpolate(chunk, size=(self.image_size, self.image_size), mode="bicubic", antialias=True).clamp(0, 1)
            sample = (chunk * 2.0 - 1.0).to(self.vae.dtype)  # [0, 1] → [-1, 1]
            latents = self.vae.encode(sample).latent_dist.mode() * self.scaling_factor  # (b, C, h, w)
            outputs.append(latents.float().cpu())
        return torch.cat(outputs)

    @torch.no_grad()
    def decode_latents(self, latents) -> np.ndarray:
        """Pictures from scaled VAE latents (the inverse of `encode_latents`, up to the VAE's loss).

        Parameters
        ----------
        latents : float (B, C, h, w) = (B, *latent_shape), numpy or torch, in scaled units

        Returns
        -------
        numpy.ndarray
            uint8 (B, image_size, image_size, 3)
        """
        latents = torch.as_tensor(latents)
        if latents.ndim != 4 or tuple(latents.shape[1:]) != self.latent_shape:
            raise DataError(f"latents must have shape (B, {', '.join(map(str, self.latent_shape))}), got {tuple(latents.shape)}")
        if latents.shape[0] == 0:
            raise DataError("latents is an empty batch")
        outputs = []
        for chunk in latents.split(self.batch_size):
            chunk = chunk.to(self.vae.device, self.vae.dtype) / self.scaling_factor  # back to the VAE's own units
            sample = self.vae.decode(chunk).sample.float().clamp(-1.0, 1.0)  # (b, 3, H, W) in [-1, 1]
            pixels = ((sample + 1.0) * 127.5).round().to(torch.uint8)
            outputs.append(pixels.permute(0, 2, 3, 1).cpu().numpy())  # (b, H, W, 3)
        return np.concatenate(outputs)
