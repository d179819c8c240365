"""Training the demo's UnCLIP decoder on SimNSD pool pictures (the paper uses a pretrained one).

Stable unCLIP's recipe at small scale: a UNet learns to denoise VAE latents of a picture given
(a) its CLIP image embedding, noise-augmented like unCLIP's "class labels", and (b) the CLIP text
encoder's hidden states of a text about it — one of its captions, or the Stable-Diffusion-style
prompt the LLM is trained to write (Table 5), so the LLM's prompt a_r steers it (Eq. 4).
Both conditions are dropped now and then, for classifier-free guidance and for "w/o LLM".

What makes a small decoder draw objects from ẑ_c on a CPU budget:
- the pool's VAE latents and CLIP embeddings are computed once and cached, and the text encoder is
  frozen, so a step is the UNet alone;
- an exponential moving average of the weights is what gets saved (diffusion samples from raw
  weights lag far behind their EMA);
- v-prediction on a zero-terminal-SNR schedule with min-SNR loss weights (Hang et al. 2023), so the
  high-noise steps that decide what is drawn are trained, and none dominates;
- the learning rate stays constant after warm-up, so a run can be extended: training is resumable
  from the state saved every `checkpoint_every` steps (`training_state/` in the pipeline folder),
  and the same command continues where a cut-off run stopped.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from neurochat.errors import ConfigError
from neurochat.models.unclip import (
    DemoUNetConfig,
    build_demo_schedulers,
    build_demo_unet,
    extend_text_context,
    save_decoder_parts,
)

log = logging.getLogger(__name__)

STATE_DIR = "training_state"  # inside the pipeline folder; not part of the bundle


@dataclass(frozen=True)
class DecoderTrainConfig:
    """How the demo decoder is trained."""

    pool_size: int = 20_000  # pool pictures (never shown in the fMRI experiment)
    steps: int = 30_000  # where training stops; a resumed run may raise it
    batch_size: int = 32
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    ema_decay: float = 0.999  # the saved weights are this moving average
    min_snr_gamma: float = 5.0  # min-SNR loss weighting
    image_drop: float = 0.1  # share of steps without image embedding (classifier-free guidance)
    text_drop: float = 0.5  # share with the empty prompt: ẑ_c alone must draw the picture (β = 1, "w/o LLM")
    augment_fraction: float = 0.5  # share of embeddings noise-augmented, like Stable unCLIP
    max_noise_level: int = 250  # of the image-noising schedule's 1000; fMRI predictions are noisy
    text_context: int = 77  # tokens of the decoder's text encoder (Stable Diffusion's 77)
    checkpoint_every: int = 500  # steps between saved states (and EMA weights in the pipeline folder)
    seed: int = 0
    max_seconds: float | None = None  # stop (resumably) when this wall time is spent in this run

    def recipe(self) -> dict:
        """The fields a resumed run must share with the run it continues."""
        return {k: v for k, v in asdict(self).items() if k not in ("steps", "max_seconds", "checkpoint_every")}


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


def pool_features(unclip_dir: Path, clip_dir: Path, config: DecoderTrainConfig, image_size: int) -> dict:
    """Pool pictures' scaled VAE latents, CLIP image embeddings and conditioning texts, cached in the
    training state (computed once per run, reused when a run resumes)."""
    from neurochat.language.facts import facts_from_scene
    from neurochat.language.templates import reconstruction_prompt
    from neurochat.models.vision import VisionEncoders
    from neurochat.sim.pool import pool_scenes, render_images

    cache = unclip_dir / STATE_DIR / "pool.pt"
    key = {"pool_size": config.pool_size, "seed": config.seed, "image_size": image_size}
    if cache.exists():
        cached = torch.load(cache, weights_only=False)
        if cached["key"] == key:
            return cached
    started = time.perf_counter()
    scenes = pool_scenes(config.seed, config.pool_size)
    texts = [list(scene.captions) + [reconstruction_prompt(facts_from_scene(scene))] for scene in scenes]
    vision = VisionEncoders(clip_dir, unclip_dir)
    latents, embeds = [], []
    for start in range(0, len(scenes), 512):
        batch = render_images(scenes[start : start + 512], image_size)
        latents.append(vision.encode_latents(batch).float())
        embeds.append(vision.image_embeddings(batch).float())
    features = {"key": key, "latents": torch.cat(latents), "embeds": torch.cat(embeds), "texts": texts}
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(features, cache)
    log.info("pool: %d pictures, latents %s, embeddings %d-d (%.0f s)", len(scenes), tuple(features["latents"].shape[1:]),
             features["embeds"].shape[1], time.perf_counter() - started)  # fmt: skip
    return features


def loss_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ weights of the v-prediction loss: min(SNR, γ) / (SNR + 1), floored so the
    zero-SNR last timestep still teaches the mean picture (ε-prediction: min(SNR, γ) / SNR)."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas).clamp(min=1e-8)
    if scheduler.config.prediction_type == "v_prediction":
        return snr.clamp(max=gamma).clamp(min=0.05) / (snr + 1)
    return snr.clamp(max=gamma) / snr.clamp(min=1e-8)


def _load_saved_unet(unclip_dir: Path, unet: torch.nn.Module, recipe: dict) -> int:
    """Load the folder's saved UNet into `unet` and return the step it was saved at."""
    from diffusers import UNet2DConditionModel

    record_path = unclip_dir / "decoder_training.json"
    if not record_path.exists():
        raise ConfigError(f"{record_path} is missing: a warm start continues a decoder trained by this recipe "
                          "(train.unclip writes that record); train without --warm-start instead")  # fmt: skip
    record = json.loads(record_path.read_text())
    if record.get("unet_config") != json.loads(json.dumps(recipe["unet"])):
        raise ConfigError(f"{unclip_dir / 'unet'} was trained with another UNet shape ({record_path}): "
                          "train it with --fresh instead of --warm-start")  # fmt: skip
    saved = UNet2DConditionModel.from_pretrained(unclip_dir / "unet")
    unet.load_state_dict(saved.state_dict())
    return int(record["steps"])


class _Ema:
    """An exponential moving average of a module's parameters, with the usual warm-up of the decay."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().clone() for name, p in module.named_parameters()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (10 + step))
        for name, p in module.named_parameters():
            self.shadow[name].lerp_(p.detach(), 1 - decay)

    def copy_to(self, module: torch.nn.Module) -> None:
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(self.shadow[name])


def train_decoder(
    unclip_dir: str | Path,
    clip_dir: str | Path,
    unet_config: DemoUNetConfig = DemoUNetConfig(),
    config: DecoderTrainConfig = DecoderTrainConfig(),
    *,
    image_size: int = 64,
    progress: bool = True,
    fresh: bool = False,
    warm_start: bool = False,
) -> dict:
    """Train the UNet of the pipeline folder `unclip_dir` (whose vision parts exist) and save it there.

    Resumes from `unclip_dir/training_state/` when it holds a run of the same recipe (`fresh=True`
    starts over). Without a saved state, `warm_start=True` continues from the UNet the folder holds (the
    EMA weights of an earlier run of this recipe, at the step its `decoder_training.json` records) with a
    fresh optimizer: the way on when a run's state was lost. Returns the run's record;
    `record["finished"]` says whether `config.steps` was reached.
    """
    import copy

    from diffusers import StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer

    from neurochat.models import quiet_libraries
    from neurochat.models.unclip import _load_vision_parts

    quiet_libraries()
    unclip_dir, clip_dir = Path(unclip_dir), Path(clip_dir)
    state_dir = unclip_dir / STATE_DIR
    if fresh and state_dir.exists():
        shutil.rmtree(state_dir)
    started = time.perf_counter()
    torch.manual_seed(config.seed)

    # 1. Pool features, computed once
    pool = pool_features(unclip_dir, clip_dir, config, image_size)
    latents, embeds, texts = pool["latents"], pool["embeds"], pool["texts"]

    # 2. The decoder's parts: normaliser from the pool's embedding statistics, schedulers, frozen text encoder, UNet
    normalizer = StableUnCLIPImageNormalizer(embedding_dim=embeds.shape[1])
    with torch.no_grad():
        normalizer.mean.copy_(embeds.mean(0, keepdim=True))
        normalizer.std.copy_(embeds.std(0, keepdim=True))
    scheduler, noising = build_demo_schedulers(unet_config)
    parts = _load_vision_parts(unclip_dir)
    parts["text_encoder"], parts["tokenizer"] = extend_text_context(parts["text_encoder"], parts["tokenizer"], config.text_context)
    parts["text_encoder"].eval().requires_grad_(False)
    unet = build_demo_unet(unet_config, tuple(latents.shape[1:]), parts["text_encoder"].config.hidden_size, embeds.shape[1])
    pipe = StableUnCLIPImg2ImgPipeline(unet=unet, image_normalizer=normalizer, scheduler=scheduler,
                                       image_noising_scheduler=noising, **parts)  # fmt: skip
    n_parameters = sum(p.numel() for p in unet.parameters())
    optimizer = torch.optim.AdamW(unet.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = _Ema(unet, config.ema_decay)
    rng = np.random.default_rng(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    step, losses, seconds_before = 0, [], 0.0
    warmup_start = 0  # a warm start's fresh optimizer warms up again

    # 3. Resume a cut-off run of the same recipe
    recipe = {"unet": asdict(unet_config), "train": config.recipe()}
    if (state_dir / "state.json").exists():
        saved = json.loads((state_dir / "state.json").read_text())
        if saved["recipe"] != json.loads(json.dumps(recipe)):
            raise ConfigError(f"{state_dir} holds a decoder run of another recipe: pass --fresh to start over, "
                              "or run the command that started it")  # fmt: skip
        tensors = torch.load(state_dir / "state.pt", weights_only=False)
        unet.load_state_dict(tensors["unet"])
        ema.shadow = tensors["ema"]
        optimizer.load_state_dict(tensors["optimizer"])
        generator.set_state(tensors["generator"])
        rng.bit_generator.state = saved["numpy_rng"]
        step, losses, seconds_before = saved["step"], saved["recent_losses"], saved["train_seconds"]
        log.info("resuming the decoder at step %d of %d", step, config.steps)
    elif warm_start:
        step = warmup_start = _load_saved_unet(unclip_dir, unet, recipe)
        ema.shadow = {name: p.detach().clone() for name, p in unet.named_parameters()}
        log.info("continuing from the saved UNet of step %d (a fresh optimizer) up to step %d", step, config.steps)
    log.info("UNet: %.2f M parameters", n_parameters / 1e6)

    def save(final: bool) -> None:
        ema_unet = copy.deepcopy(unet)
        ema.copy_to(ema_unet)
        save_decoder_parts(unclip_dir, ema_unet.eval(), normalizer, scheduler, noising,
                           text_encoder=parts["text_encoder"], tokenizer=parts["tokenizer"])  # fmt: skip
        if final and step >= config.steps:
            shutil.rmtree(state_dir, ignore_errors=True)
            return
        partial = state_dir / "state.pt.partial"
        torch.save({"unet": unet.state_dict(), "ema": ema.shadow, "optimizer": optimizer.state_dict(),
                    "generator": generator.get_state()}, partial)  # fmt: skip
        partial.replace(state_dir / "state.pt")
        (state_dir / "state.json").write_text(json.dumps({
            "recipe": recipe, "step": step, "numpy_rng": rng.bit_generator.state, "recent_losses": losses[-100:],
            "train_seconds": seconds_before + time.perf_counter() - started}))  # fmt: skip

    # 4. Denoising training with classifier-free dropout of both conditions
    unet.train()
    bar = tqdm(total=config.steps, initial=step, desc="unclip decoder", unit="step", disable=not progress)
    stopped_early = False
    while step < config.steps:
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1 - warmup_start) / config.warmup_steps)
        index = rng.integers(0, len(latents), config.batch_size)
        batch_texts = ["" if rng.random() < config.text_drop else str(rng.choice(texts[i])) for i in index]
        with torch.no_grad():
            text_hidden = pipe.encode_prompt(batch_texts, unet.device, 1, False)[0]
            levels = torch.where(torch.rand(len(index), generator=generator) < config.augment_fraction,
                                 torch.randint(0, config.max_noise_level, (len(index),), generator=generator),
                                 torch.zeros(len(index), dtype=torch.long))  # fmt: skip
            class_labels = noise_image_embeddings(pipe, embeds[index], levels, generator)
            class_labels[torch.rand(len(index), generator=generator) < config.image_drop] = 0.0  # the unconditional embedding
        x0 = latents[index]
        noise = torch.randn(x0.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(index),), generator=generator)
        noisy = scheduler.add_noise(x0, noise, timesteps)
        target = scheduler.get_velocity(x0, noise, timesteps) if scheduler.config.prediction_type == "v_prediction" else noise
        prediction = unet(noisy, timesteps, encoder_hidden_states=text_hidden, class_labels=class_labels).sample
        per_picture = F.mse_loss(prediction, target, reduction="none").mean(dim=(1, 2, 3))
        loss = (per_picture * loss_weights(scheduler, timesteps, config.min_snr_gamma)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        step += 1
        ema.update(unet, step)
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
        if step % config.checkpoint_every == 0 and step < config.steps:
            save(final=False)
        if config.max_seconds is not None and time.perf_counter() - started > config.max_seconds:
            log.info("time budget of %.0f s reached at step %d: run the command again to continue", config.max_seconds, step)
            stopped_early = True
            break
    bar.close()

    # 5. Save the EMA weights into the pipeline folder (and the state when the run is not finished)
    save(final=not stopped_early)
    return {
        "unet_config": asdict(unet_config),
        "train": asdict(config),
        "steps": step,
        "finished": step >= config.steps,
        "parameters": n_parameters,
        "final_loss": float(np.mean(losses[-50:])) if losses else None,
        "train_seconds": round(seconds_before + time.perf_counter() - started, 1),
    }
