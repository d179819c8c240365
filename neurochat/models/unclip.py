"""The UnCLIP decoder D of Eq. 4: a diffusers `StableUnCLIPImg2ImgPipeline` folder, demo or paper.

The paper uses `stabilityai/stable-diffusion-2-1-unclip-small` (the CLIP ViT-L/14 variant). The
demo builds the same pipeline at small scale: its vision components (VAE, CLIP image and text
encoders, tokenizer, feature extractor) come from `train/vision.py`; this module adds the pieces of
unCLIP's decoder (Ramesh et al., Stable unCLIP):

- `unet`: a `UNet2DConditionModel` conditioned on the CLIP text encoder's hidden states
  (cross-attention) and on the noise-augmented CLIP image embedding, given as "class labels"
  through a projection class embedding of [embedding, noise-level embedding] (2 × clip_dim);
- `image_normalizer`: the mean and std of CLIP image embeddings, to noise them in a unit scale;
- `image_noising_scheduler`: the schedule of that noise augmentation;
- `scheduler`: the denoising schedule.

Both presets load through `load_unclip`, from a local folder only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from neurochat.errors import ConfigError
from neurochat.presets import Preset

UNCLIP_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "image_encoder", "feature_extractor",
                     "image_normalizer", "image_noising_scheduler", "scheduler")  # fmt: skip


@dataclass(frozen=True)
class DemoUNetConfig:
    """The demo decoder's size and denoising parameterisation, on 4×16×16 latents.

    Attention only at 8×8 and 4×4: at 16×16 it dominates a training step and adds little to drawing
    objects that span a few latent cells (`python -m neurochat.bench precision --only unet` times a step).
    """

    block_out_channels: tuple[int, ...] = (32, 64, 128)
    cross_attention: tuple[bool, ...] = (False, True, True)  # per resolution, highest first
    layers_per_block: int = 1
    attention_heads: tuple[int, ...] = (4, 8, 8)  # diffusers calls this `attention_head_dim`
    norm_num_groups: int = 32  # GroupNorm groups; must divide every block's channels
    # the time and image embedding scale and shift each block's normalised features (ADM's AdaGN),
    # a stronger path for the image embedding than the default additive bias
    time_scale_shift: str = "scale_shift"
    train_timesteps: int = 1000
    noise_schedule: tuple[float, float] = (0.00085, 0.012)  # Stable Diffusion's scaled-linear betas
    # v-prediction on a schedule rescaled to zero terminal SNR (Lin et al. 2024): training sees pure
    # noise at the last timestep, which is where β = 1 starts, so ẑ_c alone must make the picture
    prediction_type: str = "v_prediction"
    zero_terminal_snr: bool = True


def build_demo_unet(config: DemoUNetConfig, latent_shape: tuple[int, int, int], text_hidden: int, clip_dim: int):
    """A randomly initialised UNet with unCLIP's conditioning for the demo's latents and CLIP."""
    from diffusers import UNet2DConditionModel

    channels, size, _ = latent_shape
    if len(config.cross_attention) != len(config.block_out_channels):
        raise ConfigError(f"cross_attention {config.cross_attention} needs one flag per block {config.block_out_channels}")
    down = tuple("CrossAttnDownBlock2D" if attend else "DownBlock2D" for attend in config.cross_attention)
    up = tuple("CrossAttnUpBlock2D" if attend else "UpBlock2D" for attend in reversed(config.cross_attention))
    return UNet2DConditionModel(
        sample_size=size,
        in_channels=channels,
        out_channels=channels,
        down_block_types=down,
        up_block_types=up,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        attention_head_dim=config.attention_heads,
        norm_num_groups=config.norm_num_groups,
        cross_attention_dim=text_hidden,
        resnet_time_scale_shift=config.time_scale_shift,
        # unCLIP: the image embedding enters like a class label, concatenated with the embedding of
        # its noise level (StableUnCLIPImg2ImgPipeline.noise_image_embeddings)
        class_embed_type="projection",
        projection_class_embeddings_input_dim=2 * clip_dim,
        use_linear_projection=True,
    )


def extend_text_context(text_encoder, tokenizer, length: int):
    """A copy of a CLIP text encoder (and tokenizer) that reads `length` tokens instead of fewer.

    unCLIP's text encoder need not be the CLIP whose image embeddings condition it (Stable unCLIP
    pairs CLIP ViT-L/14 images with OpenCLIP-H text). The demo's CLIP reads 32 tokens, plenty for
    captions and concept names, but the LLM's Stable-Diffusion prompts run to ~75, like SD's 77. The
    first positions keep their learned embeddings (short texts encode exactly as before); the new
    ones start as the last learned one and are fine-tuned with the decoder.
    """
    import copy

    from transformers import CLIPTextModel

    old = text_encoder.config.max_position_embeddings
    if length <= old:
        return text_encoder, tokenizer
    config = copy.deepcopy(text_encoder.config)
    config.max_position_embeddings = length
    extended = CLIPTextModel(config)
    state = text_encoder.state_dict()
    positions = state["embeddings.position_embedding.weight"]  # (old, hidden)
    state["embeddings.position_embedding.weight"] = torch.cat([positions, positions[-1:].repeat(length - old, 1)])
    state.pop("embeddings.position_ids", None)
    extended.load_state_dict(state, strict=False)
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.model_max_length = length
    return extended, tokenizer


def build_demo_schedulers(config: DemoUNetConfig):
    """(scheduler, image_noising_scheduler) as Stable unCLIP has them: DDIM to sample, DDPM
    squared-cosine to noise-augment image embeddings."""
    from diffusers import DDIMScheduler, DDPMScheduler

    beta_start, beta_end = config.noise_schedule
    scheduler = DDIMScheduler(num_train_timesteps=config.train_timesteps, beta_schedule="scaled_linear",
                              beta_start=beta_start, beta_end=beta_end, prediction_type=config.prediction_type,
                              rescale_betas_zero_snr=config.zero_terminal_snr,
                              # "trailing" puts the first sampling step at the last timestep (pure noise)
                              timestep_spacing="trailing" if config.zero_terminal_snr else "leading",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=0 if config.zero_terminal_snr else 1)  # fmt: skip
    noising = DDPMScheduler(num_train_timesteps=config.train_timesteps, beta_schedule="squaredcos_cap_v2")
    return scheduler, noising


def save_decoder_parts(folder: str | Path, unet, image_normalizer, scheduler, image_noising_scheduler, *,
                       text_encoder=None, tokenizer=None) -> None:  # fmt: skip
    """Write the decoder's parts (and its fine-tuned text encoder) next to the vision parts, and the
    pipeline's model_index.json."""
    from diffusers import StableUnCLIPImg2ImgPipeline

    folder = Path(folder)
    if text_encoder is not None:
        text_encoder.save_pretrained(folder / "text_encoder")
        tokenizer.save_pretrained(folder / "tokenizer")
    unet.save_pretrained(folder / "unet")
    image_normalizer.save_pretrained(folder / "image_normalizer")
    scheduler.save_pretrained(folder / "scheduler")
    image_noising_scheduler.save_pretrained(folder / "image_noising_scheduler")
    # model_index.json lists every component's class; build it from a pipeline of the loaded parts
    parts = _load_vision_parts(folder)
    pipe = StableUnCLIPImg2ImgPipeline(unet=unet, image_normalizer=image_normalizer, scheduler=scheduler,
                                       image_noising_scheduler=image_noising_scheduler, **parts)  # fmt: skip
    pipe.save_config(folder)


def _load_vision_parts(folder: Path) -> dict:
    from diffusers import AutoencoderKL
    from transformers import CLIPImageProcessor, CLIPTextModel, CLIPTokenizer, CLIPVisionModelWithProjection

    return {
        "vae": AutoencoderKL.from_pretrained(folder / "vae", local_files_only=True),
        "text_encoder": CLIPTextModel.from_pretrained(folder / "text_encoder", local_files_only=True),
        "tokenizer": CLIPTokenizer.from_pretrained(folder / "tokenizer", local_files_only=True),
        "image_encoder": CLIPVisionModelWithProjection.from_pretrained(folder / "image_encoder", local_files_only=True),
        "feature_extractor": CLIPImageProcessor.from_pretrained(folder / "feature_extractor", local_files_only=True),
    }


def native_image_size(unclip_dir: str | Path) -> int:
    """The picture size the decoder was trained at: its UNet's latent `sample_size` times the VAE's
    downsampling (SD-2.1-unclip-small: 96 × 8 = 768 px; the demo: 16 × 4 = 64 px)."""
    folder = Path(unclip_dir)
    for part in ("unet", "vae"):
        if not (folder / part / "config.json").exists():
            raise ConfigError(f"{folder / part / 'config.json'} is missing: the decoder's folder needs its {part}/ "
                              "to say which picture size it works at")  # fmt: skip
    unet = json.loads((folder / "unet" / "config.json").read_text())
    vae = json.loads((folder / "vae" / "config.json").read_text())
    return int(unet["sample_size"]) * 2 ** (len(vae["block_out_channels"]) - 1)


def load_unclip(preset: Preset | str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = None,
                *, offload: bool = False):  # fmt: skip
    """The preset's StableUnCLIPImg2ImgPipeline, from its local folder; bf16 on GPU by default.

    The pipeline's own image encoder and feature extractor are not loaded: reconstruction is conditioned
    on the extractor's predicted ẑ_c (Eq. 4), never on a picture, so they would only hold memory (CLIP
    ViT-L/14's vision tower, 0.6 GiB in bf16, which the explorer already has as its CLIP;
    `same_image_encoder` checks that the two are one network). `offload`: each part moves to the GPU
    only while it runs (diffusers' model CPU offload, on accelerate's hooks), for cards that cannot hold
    the whole app.
    """
    from diffusers import StableUnCLIPImg2ImgPipeline

    from neurochat.models import quiet_libraries

    quiet_libraries()
    folder = Path(preset.unclip_dir if isinstance(preset, Preset) else preset)
    missing = [name for name in UNCLIP_SUBFOLDERS if name not in _NOT_LOADED and not (folder / name).is_dir()]
    if missing or not (folder / "model_index.json").exists():
        what = ", ".join(missing) or "model_index.json"
        hint = preset.missing("unclip") if isinstance(preset, Preset) else "train it with `python -m train.unclip`"
        raise ConfigError(f"the UnCLIP pipeline folder {folder} lacks {what}: {hint}")
    device = torch.device(device)
    if offload and device.type != "cuda":
        raise ConfigError("offloading moves the decoder's parts between the CPU and a GPU: it needs --device cuda")
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(folder, local_files_only=True, dtype=dtype,
                                                       **{name: None for name in _NOT_LOADED})  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    if offload:
        pipe.enable_model_cpu_offload(device=device)
        return pipe
    return pipe.to(device)


_NOT_LOADED = ("image_encoder", "feature_extractor")  # see load_unclip
IMAGE_ENCODER_TOLERANCE = 1e-3  # relative difference of one embedding below which two encoders count as one


@torch.no_grad()
def same_image_encoder(unclip_dir: str | Path, vision) -> bool | None:
    """Whether the decoder folder's image encoder is the CLIP of `vision` (a `VisionEncoders`): both embed one
    fixed picture, in `vision`'s device and precision. None when the folder has no image encoder.

    Stable unCLIP is conditioned on its own image encoder's embeddings; the extractor learns to predict
    those of `vision.clip`. For SD-2.1-unclip-small and openai/clip-vit-large-patch14 they are the same
    network, so the explorer keeps one copy; a False here means the decoder reads ẑ_c in another
    embedding space than the one ẑ_c was trained in.
    """
    from transformers import CLIPVisionModelWithProjection

    folder = Path(unclip_dir) / "image_encoder"
    if not (folder / "config.json").exists():
        return None
    encoder = CLIPVisionModelWithProjection.from_pretrained(folder, local_files_only=True, dtype=vision.dtype)
    encoder.to(vision.device).eval()
    generator = torch.Generator().manual_seed(0)
    size = (vision.preprocessing.crop_height, vision.preprocessing.crop_width)
    picture = torch.rand(1, 3, *size, generator=generator)  # (1, 3, h, w) in [0, 1]
    pixel_values = vision.preprocessing(picture.to(vision.device)).to(vision.dtype)
    ours = vision.clip.get_image_features(pixel_values=pixel_values).pooler_output.float()
    theirs = encoder(pixel_values=pixel_values).image_embeds.float()
    del encoder
    if ours.shape != theirs.shape:
        return False
    return bool((ours - theirs).norm() <= IMAGE_ENCODER_TOLERANCE * ours.norm())
