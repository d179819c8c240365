"""Training the demo's UnCLIP decoder on SimNSD pool pictures (the paper uses a pretrained one).

Stable unCLIP's recipe at small scale: a UNet learns to denoise VAE latents of a picture given
(a) its CLIP image embedding, noise-augmented like unCLIP's "class labels", and (b) the CLIP text
encoder's hidden states of a text about it — one of its captions, or the Stable-Diffusion-style
prompt the LLM is trained to write (Table 5), so the LLM's prompt a_r steers it (Eq. 4).
Both conditions are dropped now and then, for classifier-free guidance and for "w/o LLM".

Latents and image embeddings of the pool are computed once with the frozen vision models.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from neurochat.training.schedule import warmup_cosine
from neurochat.models.unclip import (
    DemoUNetConfig,
    build_demo_schedulers,
    build_demo_unet,
    extend_text_context,
    save_decoder_parts,
)


@dataclass(frozen=True)
class DecoderTrainConfig:
    """How the demo decoder is trained."""

    pool_size: int = 12_000  # pool pictures (never shown in the fMRI experiment)
    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    image_drop: float = 0.1  # share of steps without image embedding (classifier-free guidance)
    text_drop: float = 0.2  # share with the empty prompt ("w/o LLM" and guidance)
    augment_fraction: float = 0.5  # share of embeddings noise-augmented, like Stable unCLIP
    max_noise_level: int = 250  # of the image-noising schedule's 1000; fMRI predictions are noisy
    text_context: int = 77  # tokens of the decoder's text encoder (Stable Diffusion's 77)
    text_lr: float = 1e-4  # the text encoder is fine-tuned gently with the UNet
    seed: int = 0
    # Stop after this many steps, the schedule still spanning `steps`: the committed demo decoder
    # stopped at step 738 of its 1,500-step cosine, and a rebuild must train that same decoder on
    # any machine (a time budget stops at a step that depends on the machine's speed).
    stop_at_step: int | None = None
    max_seconds: float | None = None  # stop when this wall time is spent


def noise_image_embeddings(pipe, embeds: torch.Tensor, levels: torch.Tensor, generator=None) -> torch.Tensor:
    """`StableUnCLIPImg2ImgPipeline.noise_image_embeddings` with one noise level per row.

    Normalise, noise to `levels` with the image-noising schedule, un-normalise, and append the
    sinusoidal embedding of the level: (B, d) → (B, 2d), unCLIP's class labels.
    """
    from diffusers.models.embeddings import get_timestep_embedding

    noise = torch.randn(embeds.shape, generator=generator).to(embeds)
    scaled = pipe.image_normalizer.scale(embeds)
    noised = pipe.image_noising_scheduler.add_noise(scaled, timesteps=levels, noise=noise)
    noised = pipe.image_normalizer.unscale(noised)
    level_embedding = get_timestep_embedding(levels, embedding_dim=embeds.shape[-1], flip_sin_to_cos=True,
                                             downscale_freq_shift=0).to(embeds.dtype)  # fmt: skip
    return torch.cat([noised, level_embedding], dim=1)


def train_decoder(
    unclip_dir: str | Path,
    clip_dir: str | Path,
    unet_config: DemoUNetConfig = DemoUNetConfig(),
    config: DecoderTrainConfig = DecoderTrainConfig(),
    *,
    image_size: int = 64,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    log=print,
) -> dict:
    """Train the UNet of the pipeline folder `unclip_dir` (whose vision parts exist) and save it there."""
    from diffusers import StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    from neurochat.language.facts import facts_from_scene
    from neurochat.language.templates import reconstruction_prompt
    from neurochat.models.unclip import _load_vision_parts
    from neurochat.models.vision import VisionEncoders
    from neurochat.sim.pool import pool_scenes, render_images

    from neurochat.models import quiet_libraries

    quiet_libraries()
    unclip_dir = Path(unclip_dir)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    set_seed(config.seed)
    started = time.perf_counter()

    # 1. Pool pictures and the texts that may condition them
    scenes = pool_scenes(config.seed, config.pool_size)
    images = render_images(scenes, image_size)
    texts = [list(scene.captions) + [reconstruction_prompt(facts_from_scene(scene))] for scene in scenes]

    # 2. Frozen vision features, computed once: VAE latents (scaled) and CLIP image embeddings
    vision = VisionEncoders(clip_dir, unclip_dir)
    latents, embeds = [], []
    for start in range(0, len(images), 256):
        batch = images[start : start + 256]
        latents.append(vision.encode_latents(batch).float())
        embeds.append(vision.image_embeddings(batch).float())
    latents, embeds = torch.cat(latents), torch.cat(embeds)  # (n, C, h, w), (n, d)
    log(f"pool: {len(images)} pictures, latents {tuple(latents.shape[1:])}, embeddings {embeds.shape[1]}-d "
        f"({time.perf_counter() - started:.0f} s)")  # fmt: skip

    # 3. The decoder's parts: normaliser from the pool's embedding statistics, schedulers, UNet
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=embeds.shape[1])
    with torch.no_grad():
        normalizer.mean.copy_(embeds.mean(0, keepdim=True))
        normalizer.std.copy_(embeds.std(0, keepdim=True))
    scheduler, noising = build_demo_schedulers(unet_config)
    parts = _load_vision_parts(unclip_dir)
    parts["text_encoder"], parts["tokenizer"] = extend_text_context(parts["text_encoder"], parts["tokenizer"], config.text_context)
    text_encoder = parts["text_encoder"].train()
    unet = build_demo_unet(unet_config, tuple(latents.shape[1:]), parts["text_encoder"].config.hidden_size, embeds.shape[1])
    pipe = StableUnCLIPImg2ImgPipeline(unet=unet, image_normalizer=normalizer, scheduler=scheduler,
                                       image_noising_scheduler=noising, **parts)  # fmt: skip
    n_parameters = sum(p.numel() for p in unet.parameters())
    log(f"UNet: {n_parameters / 1e6:.2f} M parameters")

    optimizer = torch.optim.AdamW([{"params": unet.parameters(), "lr": config.lr},
                                   {"params": text_encoder.parameters(), "lr": config.text_lr}],
                                  weight_decay=config.weight_decay)  # fmt: skip

    lr_schedule = warmup_cosine(optimizer, config.warmup_steps, config.steps)
    unet, text_encoder, optimizer, lr_schedule = accelerator.prepare(unet, text_encoder, optimizer, lr_schedule)
    device = accelerator.device

    # 4. Denoising training with classifier-free dropout of both conditions
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    losses = []
    step = 0
    bar = tqdm(total=config.stop_at_step or config.steps, desc="unclip decoder", unit="step", disable=not progress)
    for step in range(1, config.steps + 1):
        index = rng.integers(0, len(images), config.batch_size)
        x0 = latents[index].to(device)
        batch_texts = ["" if rng.random() < config.text_drop else str(rng.choice(texts[i])) for i in index]
        text_hidden = pipe.encode_prompt(batch_texts, device, 1, False)[0]  # through the fine-tuned text encoder
        with torch.no_grad():
            levels = torch.where(torch.rand(len(index), generator=generator) < config.augment_fraction,
                                 torch.randint(0, config.max_noise_level, (len(index),), generator=generator),
                                 torch.zeros(len(index), dtype=torch.long))  # fmt: skip
            class_labels = noise_image_embeddings(pipe, embeds[index].to(device), levels.to(device), generator)
            dropped = torch.rand(len(index), generator=generator) < config.image_drop
            class_labels[dropped.to(device)] = 0.0  # the pipeline's unconditional image embedding is zeros
        noise = torch.randn(x0.shape, generator=generator).to(device)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),), generator=generator).to(device)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        prediction = unet(noisy, timesteps, encoder_hidden_states=text_hidden, class_labels=class_labels).sample
        loss = F.mse_loss(prediction, noise)  # epsilon prediction
        accelerator.backward(loss)
        accelerator.clip_grad_norm_(list(unet.parameters()) + list(text_encoder.parameters()), 1.0)
        optimizer.step()
        lr_schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step == config.stop_at_step:
            break
        if config.max_seconds is not None and time.perf_counter() - started > config.max_seconds:
            log(f"time budget of {config.max_seconds:.0f} s reached at step {step}")
            break
    bar.close()

    # 5. Save the decoder's parts into the pipeline folder
    save_decoder_parts(unclip_dir, accelerator.unwrap_model(unet), normalizer, scheduler, noising,
                       text_encoder=accelerator.unwrap_model(text_encoder).eval(), tokenizer=parts["tokenizer"])  # fmt: skip
    return {
        "unet_config": asdict(unet_config),
        "train": asdict(config),
        "steps": step,
        "parameters": n_parameters,
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
