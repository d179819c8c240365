"""Visual reconstruction with UnCLIP and the β knob (paper Eq. 4, Sec. 3.4, Fig. 5–6).

    x̂ = D((1 − β) ẑ_v + β σ | ẑ_c, a_r),   σ ~ N(0, 1),   β = 0.93 by default

D is the frozen Stable unCLIP decoder, conditioned on the extractor's predicted CLIP image
embedding ẑ_c (as unCLIP's noise-augmented "class labels") and on the LLM's reconstruction prompt
a_r (through the text encoder). ẑ_v, the predicted VAE latent, is the starting point: β is the
noise strength of an img2img pass. β = 0 returns the decode of ẑ_v; β = 1 starts from pure noise,
so ẑ_c and a_r alone make the picture.

diffusers' `StableUnCLIPImg2ImgPipeline` has no strength argument (its `latents=` is x_T of the
full schedule), so the loop below is written out, with the pipeline's own components and helpers
(`encode_prompt`, `noise_image_embeddings`, the scheduler), following diffusers' img2img logic.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from neurochat.errors import ConfigError, DataError

# β = 0.93 is the paper's (Sec. 4.1, App. C). On the demo the report's β sweep keeps it: object_hit rises
# from the decode of ẑ_v alone (β = 0) to a plateau from β ≈ 0.6 to 1 while PixCorr falls, and at 0.93 the
# picture comes from ẑ_c and the prompt, so an ablation shows in it in full (the report's β sweep;
# `python notebooks/experiments/decoder/beta_guidance.py`).
DEFAULT_BETA = 0.93
DEFAULT_STEPS = 20  # a preset may run fewer (`Preset.denoising_steps`)
# Classifier-free guidance: at β = 0.93 the demo decoder names a true object in more reconstructions at 6
# than at 3 (same script), and Stable Diffusion's own default (7.5) is of the same order.
DEFAULT_GUIDANCE = 6.0


@dataclass(frozen=True)
class StartLatents:
    """Where the denoising starts for a given β."""

    latents: torch.Tensor  # (B, C, h, w) x_t at the first timestep
    timesteps: torch.Tensor  # the timesteps still to run
    noise_fraction: float  # std of the noise part of x_t relative to a unit latent: 0 (β = 0) .. 1 (β = 1)


def denoising_steps(beta: float, steps: int = DEFAULT_STEPS) -> int:
    """How many of the schedule's `steps` a pass at strength β runs: β moves the picture in steps of 1/`steps`."""
    return min(int(round(steps * beta)), steps)


def start_latents(scheduler, z_v: torch.Tensor, beta: float, steps: int, generator: torch.Generator) -> StartLatents:
    """Noise ẑ_v to the timestep that strength β reaches (diffusers' img2img `get_timesteps` logic).

    The scheduler's timesteps are set here. β = 1 starts from pure noise (no trace of ẑ_v), as Eq. 4
    asks, instead of `add_noise` at the last timestep, which keeps a few percent of ẑ_v.
    """
    if not 0.0 <= beta <= 1.0:
        raise ConfigError(f"β = {beta} is outside [0, 1]: it is the share of noise mixed into ẑ_v (Eq. 4)")
    scheduler.set_timesteps(steps, device=z_v.device)
    order = getattr(scheduler, "order", 1)
    n_run = denoising_steps(beta, steps)
    t_start = steps - n_run
    timesteps = scheduler.timesteps[t_start * order :]
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(t_start * order)
    # one draw for every picture of the batch: a picture is the same whether drawn alone or beside others
    noise = torch.randn((1, *z_v.shape[1:]), generator=generator, dtype=torch.float32)
    noise = noise.expand(len(z_v), *noise.shape[1:]).to(z_v.device, z_v.dtype)
    if n_run == 0:
        return StartLatents(z_v, timesteps, 0.0)
    if n_run == steps and beta >= 1.0:
        return StartLatents(noise * getattr(scheduler, "init_noise_sigma", 1.0), timesteps, 1.0)
    t = timesteps[:1].repeat(len(z_v))
    latents = scheduler.add_noise(z_v, noise, t)
    alpha_bar = scheduler.alphas_cumprod[int(timesteps[0])].item()
    return StartLatents(latents, timesteps, float(np.sqrt(1.0 - alpha_bar)))


class Reconstructor:
    """Eq. 4 on a loaded Stable unCLIP pipeline. Components are loaded once and reused.

    Parameters
    ----------
    pipe : diffusers.StableUnCLIPImg2ImgPipeline
        Loaded with `neurochat.models.unclip.load_unclip` (demo folder or the paper's).
    """

    def __init__(self, pipe):
        self.pipe = pipe
        # A fast tokenizer keeps its padding and truncation settings in the one Rust object it wraps and sets
        # them on every call, and diffusers' `encode_prompt` tokenizes twice (padded to the context, then to the
        # longest): from two threads at once (the app's β lane beside its device queue) a prompt now and then
        # came out two tokens long instead of 77, and the same seed drew another picture. The models keep no
        # state between calls, and each call makes its own scheduler: reconstructions may overlap.
        self._tokenizing = threading.Lock()

    @property
    def device(self) -> torch.device:
        # with model CPU offload (`load_unclip(offload=True)`) the parts wait on the CPU: work on the GPU they move to
        return getattr(self.pipe, "_execution_device", None) or self.pipe.unet.device

    @property
    def dtype(self) -> torch.dtype:
        return self.pipe.unet.dtype

    @torch.inference_mode()  # no autograd bookkeeping at all: ~10% faster than no_grad for this small UNet on a CPU
    def decode(self, z_v: torch.Tensor) -> np.ndarray:
        """The VAE decode of scaled latents, uint8 (B, H, W, 3) (what β = 0 returns)."""
        vae = self.pipe.vae
        images = vae.decode(z_v.to(self.device, vae.dtype) / vae.config.scaling_factor).sample
        return _to_uint8(images)

    @torch.inference_mode()
    def __call__(
        self,
        z_c: torch.Tensor,
        z_v: torch.Tensor,
        prompt: str | list[str] = "",
        beta: float = DEFAULT_BETA,
        seed: int = 0,
        steps: int = DEFAULT_STEPS,
        guidance: float = DEFAULT_GUIDANCE,
        noise_level: int = 0,
        progress=None,
    ) -> np.ndarray:
        """Reconstruct pictures from predicted features, uint8 (B, H, W, 3).

        Parameters
        ----------
        z_c : (B, clip_dim) predicted CLIP image embeddings ẑ_c
        z_v : (B, C, h, w) predicted VAE latents ẑ_v in scaled units
        prompt : the reconstruction prompt a_r, one for all or one per picture ("" for "w/o LLM")
        beta : noise strength in [0, 1] (Eq. 4)
        seed : the same seed gives the same picture, drawn alone or in a batch (every picture of a batch
            starts from the seed's one noise, so pictures that differ only in ẑ differ only by it)
        steps, guidance : scheduler steps of the full schedule, classifier-free guidance scale
        noise_level : unCLIP's noise augmentation of ẑ_c (0 = none)
        progress : optional callable(step, total) for progress bars
        """
        pipe = self.pipe
        # 1. Check inputs
        z_c = torch.as_tensor(z_c, dtype=torch.float32)
        z_v = torch.as_tensor(z_v, dtype=torch.float32)
        if z_c.ndim != 2 or z_v.ndim != 4 or len(z_c) != len(z_v):
            raise DataError(f"expected ẑ_c (B, d) and ẑ_v (B, C, h, w) with the same B; got {tuple(z_c.shape)} and {tuple(z_v.shape)}")
        check_latents(pipe, z_v)
        batch = len(z_c)
        prompts = [prompt] * batch if isinstance(prompt, str) else list(prompt)
        if len(prompts) != batch:
            raise DataError(f"{len(prompts)} prompts for {batch} pictures")
        device, dtype = self.device, self.dtype
        z_c, z_v = z_c.to(device, dtype), z_v.to(device, dtype)
        if beta == 0:
            return self.decode(z_v)
        generator = torch.Generator().manual_seed(seed)
        use_guidance = guidance > 1.0

        # 2. Encode the prompt a_r (and the empty prompt for classifier-free guidance)
        with self._tokenizing:
            prompt_embeds, negative_embeds = pipe.encode_prompt(
                prompts, device, 1, use_guidance, negative_prompt=[""] * batch if use_guidance else None
            )

        # 3. Encode ẑ_c as unCLIP's class labels: noise augmentation + noise-level embedding
        embedding_noise = torch.randn((1, z_c.shape[1]), generator=generator, dtype=torch.float32)
        embedding_noise = embedding_noise.expand_as(z_c).to(device, dtype)  # one draw per seed, as for the latents
        image_embeds = pipe.noise_image_embeddings(z_c, noise_level=noise_level, noise=embedding_noise)
        if use_guidance:
            prompt_embeds = torch.cat([negative_embeds, prompt_embeds])
            image_embeds = torch.cat([torch.zeros_like(image_embeds), image_embeds])  # as the pipeline does

        # 4. Start from ẑ_v noised to strength β, on a scheduler of this call's own: a scheduler keeps the
        # state of its pass (timesteps, step index, a multistep solver's history), and passes may overlap
        scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
        start = start_latents(scheduler, z_v, beta, steps, generator)
        latents = start.latents

        # 5. Denoise
        for i, t in enumerate(start.timesteps):
            model_input = torch.cat([latents] * 2) if use_guidance else latents
            model_input = scheduler.scale_model_input(model_input, t)
            noise_pred = pipe.unet(model_input, t, encoder_hidden_states=prompt_embeds, class_labels=image_embeds,
                                   return_dict=False)[0]  # fmt: skip
            if use_guidance:
                uncond, cond = noise_pred.chunk(2)
                noise_pred = uncond + guidance * (cond - uncond)
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            if progress is not None:
                progress(i + 1, len(start.timesteps))

        # 6. Decode
        return self.decode(latents)


def check_latents(pipe, z_v: torch.Tensor) -> None:
    """Refuse ẑ_v the decoder cannot process, naming what it can: its latent channels, and sides that
    its UNet can halve at every down block. Other sizes than the native one pass (a convolutional UNet
    runs at any such size), though the decoder draws best at its own (`unclip.native_image_size`)."""
    config = pipe.unet.config
    channels, size = config.in_channels, config.sample_size
    factor = 2 ** (len(config.down_block_types) - 1)  # the UNet halves the latent at each down block but the last
    scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
    height, width = z_v.shape[-2:]
    if z_v.shape[1] != channels or height % factor or width % factor:
        raise DataError(
            f"ẑ_v has shape {tuple(z_v.shape[1:])}, but this decoder takes latents of {channels} channels whose sides "
            f"are multiples of {factor}; its own size is ({channels}, {size}, {size}), a {size * scale} px picture. "
            f"The extractor was trained for another VAE or resolution: retrain it on this preset's targets "
            "(`python -m train.extractor`), which are made at the decoder's size"
        )


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → uint8 (B, H, W, 3)."""
    images = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return images.permute(0, 2, 3, 1).cpu().numpy()
