"""The demo VAE: its config, the model, its training (L1 + a little KL) and the latent scaling factor."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neurochat.models.vision import images_to_unit_float
from neurochat.training.precision import autocast, check_mixed_precision
from neurochat.training.schedule import warmup_cosine
from neurochat.training.vision.common import LOSS_WINDOW, PoolPictures, TrainingRun, out_of_time

@dataclass(frozen=True)
class VaeConfig:
    """The demo VAE: 64×64 pictures ↔ 4×16×16 latents (the vision manifest records how long the defaults took)."""

    image_size: int = 64
    block_out_channels: tuple[int, ...] = (16, 32, 64)  # three levels → two downsamplings → factor 4
    layers_per_block: int = 1
    latent_channels: int = 4  # as Stable Diffusion's, so the unCLIP UNet layout carries over
    norm_num_groups: int = 8  # GroupNorm groups; must divide every channel count
    batch_size: int = 32
    steps: int = 1800
    learning_rate: float = 2e-3
    warmup_steps: int = 50
    # Stable Diffusion's autoencoder sums reconstruction and KL over each picture and weights KL by 1e-6;
    # we average L1 over pixel values, so KL is divided by the same count to keep that balance.
    kl_weight: float = 1e-6
    scaling_samples: int = 2048  # training pictures whose latent std sets `scaling_factor`
    max_seconds: float | None = None
    mixed_precision: str = "no"  # "bf16": forward pass under bf16 autocast (neurochat.training.precision)

    def __post_init__(self):
        check_mixed_precision(self.mixed_precision)


def build_vae(config: VaeConfig):
    """A randomly initialised `AutoencoderKL` for `config`."""
    from diffusers import AutoencoderKL

    levels = len(config.block_out_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
        sample_size=config.image_size,
    )


class VaeWithKl(nn.Module):
    """The VAE as one forward pass that also returns the KL term, so DDP sees a single `forward`."""

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, sample: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(sample).latent_dist  # a diagonal Gaussian over (B, C, h, w)
        reconstruction = self.vae.decode(posterior.sample()).sample  # (B, 3, H, W)
        return reconstruction, posterior.kl()  # kl: (B,), summed over the latent


def vae_loss(reconstruction: torch.Tensor, kl: torch.Tensor, sample: torch.Tensor, config: VaeConfig) -> torch.Tensor:
    """L1 per pixel value plus KL per pixel value times `kl_weight`, in float32 (the forward may be bf16)."""
    return (reconstruction.float() - sample).abs().mean() + config.kl_weight * kl.float().mean() / sample[0].numel()


def train_vae(vae, pool: PoolPictures, config: VaeConfig, *, seed: int, accelerator=None, progress: bool = True) -> TrainingRun:
    """Train `vae` to reconstruct pool pictures (L1 + a little KL), in place."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = accelerator or Accelerator()
    set_seed(seed)
    wrapper = VaeWithKl(vae)
    optimizer = torch.optim.AdamW(wrapper.parameters(), lr=config.learning_rate, weight_decay=0.0)
    scheduler = warmup_cosine(optimizer, config.warmup_steps, config.steps)
    wrapper, optimizer = accelerator.prepare(wrapper, optimizer)
    rng = np.random.default_rng([seed, accelerator.process_index])

    wrapper.train()
    losses, started = [], time.perf_counter()
    bar = tqdm(range(config.steps), desc="vae", disable=not (progress and accelerator.is_local_main_process))
    for _ in bar:
        indices = rng.integers(len(pool), size=config.batch_size)
        sample = (images_to_unit_float(pool.images[indices]) * 2.0 - 1.0).to(accelerator.device)  # (B, 3, H, W) in [-1, 1]
        with autocast(accelerator.device, config.mixed_precision):
            reconstruction, kl = wrapper(sample)
        loss = vae_loss(reconstruction, kl, sample, config)
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if out_of_time(accelerator, started, config.max_seconds):
            break
    wrapper.eval()
    return TrainingRun(len(losses), time.perf_counter() - started, float(np.mean(losses[-LOSS_WINDOW:])), losses)


@torch.no_grad()
def latent_scaling_factor(vae, images: np.ndarray, batch_size: int = 256) -> float:
    """1 / std of the VAE's latents (posterior modes) of `images`, as Stable Diffusion chose its 0.18215.

    Scaled latents then have unit variance, which the diffusion noise schedule (and Eq. 4's mix
    (1−β)ẑ_v + βσ) assumes.
    """
    device = next(vae.parameters()).device
    latents = [
        vae.encode((images_to_unit_float(images[start : start + batch_size]) * 2.0 - 1.0).to(device)).latent_dist.mode().cpu()
        for start in range(0, len(images), batch_size)
    ]
    return float(1.0 / torch.cat(latents).std())
