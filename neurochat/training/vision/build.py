"""The whole demo vision build: each part (CLIP, VAE) trained and saved on its own, then both measured
together and described in a manifest."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

import torch

from neurochat.errors import ConfigError
from neurochat.manifest import file_records
from neurochat.models.vision import ClipPreprocessing, VisionEncoders
from neurochat.sim.pool import POOL_FIRST_ID
from neurochat.training.vision.clip import ClipConfig, build_clip, build_tokenizer, image_normalisation, tokenizer_corpus, train_clip
from neurochat.training.vision.common import PoolPictures, count_parameters
from neurochat.training.vision.folders import CLIP_FOLDER, UNCLIP_FOLDER, UNCLIP_VISION_SUBFOLDERS, save_clip_parts, save_vae
from neurochat.training.vision.quality import vision_quality
from neurochat.training.vision.vae import VaeConfig, build_vae, latent_scaling_factor, train_vae

log = logging.getLogger(__name__)

VISION_PARTS = ("clip", "vae")  # independent trainings: `train.vision --part` runs each in its own process
PART_RECORDS = "vision_parts"  # OUT/vision_parts/PART.json: what a part's training did, for the manifest


def train_vision_part(
    out: str | Path,
    part: str,
    *,
    clip_config: ClipConfig = ClipConfig(),
    vae_config: VaeConfig = VaeConfig(),
    seed: int = 0,
    pool_size: int = 20_000,
    progress: bool = True,
) -> dict:
    """Train the demo CLIP or VAE on pool pictures `POOL_FIRST_ID .. + pool_size`, save its folders
    under `out` and its record to `out/vision_parts/PART.json`; return the record.

    Each part seeds itself, so it trains the same weights alone or after the other.
    """
    from accelerate import Accelerator

    if part not in VISION_PARTS:
        raise ConfigError(f"part={part!r}: choose one of {VISION_PARTS}")
    out = Path(out)
    accelerator = Accelerator()
    started = time.perf_counter()
    config = clip_config if part == "clip" else vae_config
    log.info(f"{part}: rendering {pool_size} training pool pictures (seed {seed}) ...")
    train_pool = PoolPictures.render(seed, pool_size, config.image_size)
    record = {"config": asdict(config), "render_seconds": round(time.perf_counter() - started, 1)}

    torch.manual_seed(seed)
    if part == "clip":
        tokenizer = build_tokenizer(tokenizer_corpus(train_pool), clip_config)
        mean, std = image_normalisation(train_pool.images)
        preprocessing = ClipPreprocessing(clip_config.image_size, clip_config.image_size, clip_config.image_size, mean, std)
        clip = build_clip(clip_config, tokenizer)
        log.info(f"CLIP: {count_parameters(clip):,} parameters, vocabulary {len(tokenizer)}, {clip_config.steps} steps")
        run = train_clip(clip, tokenizer, train_pool, preprocessing, clip_config, seed=seed, accelerator=accelerator, progress=progress)
        clip = clip.cpu()  # trained in place; prepare() only wrapped it
        record.update(parameters=count_parameters(clip), vocabulary=len(tokenizer), image_mean=list(mean), image_std=list(std))
        log.info(f"CLIP: {run.steps} steps in {run.wall_seconds:.0f} s, final loss {run.final_loss:.3f}")
    else:
        vae = build_vae(vae_config)
        log.info(f"VAE: {count_parameters(vae):,} parameters, {vae_config.steps} steps")
        run = train_vae(vae, train_pool, vae_config, seed=seed, accelerator=accelerator, progress=progress)
        vae = vae.cpu().eval()
        scaling_factor = latent_scaling_factor(vae, train_pool.images[: vae_config.scaling_samples])
        vae.register_to_config(scaling_factor=scaling_factor)
        record.update(parameters=count_parameters(vae), scaling_factor=scaling_factor)
        log.info(f"VAE: {run.steps} steps in {run.wall_seconds:.0f} s, final loss {run.final_loss:.4f}, scaling factor {scaling_factor:.4f}")
    record.update(steps=run.steps, wall_seconds=round(run.wall_seconds, 1), final_loss=round(run.final_loss, 5 if part == "vae" else 4))
    # how the part ran: wall times mean little if other work shared the cores
    record["run"] = {"seconds": round(time.perf_counter() - started, 1), "torch_threads": torch.get_num_threads(),
                     "load_average_1min_at_end": os.getloadavg()[0]}  # fmt: skip

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:  # one process writes the folders
        if part == "clip":
            save_clip_parts(out, clip, tokenizer, preprocessing)
        else:
            save_vae(out, vae)
        (out / PART_RECORDS).mkdir(parents=True, exist_ok=True)
        (out / PART_RECORDS / f"{part}.json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def finish_demo_vision(out: str | Path, *, seed: int = 0, pool_size: int = 20_000, eval_size: int = 1000,
                       retrieval_size: int = 200, command: str = "") -> dict:  # fmt: skip
    """Once both parts are trained: reload them through `VisionEncoders` (the path every other part
    of NeuroChat uses), measure them on the `eval_size` held-out pool pictures right after the
    training pool, and return the manifest."""
    import accelerate
    import diffusers
    import transformers

    out = Path(out)
    records = {}
    for part in VISION_PARTS:
        path = out / PART_RECORDS / f"{part}.json"
        if not path.exists():
            raise ConfigError(f"{path} is missing: train that part first (`python -m train.vision --part {part} --out {out}`)")
        records[part] = json.loads(path.read_text())
    clip_record, vae_record = records["clip"], records["vae"]
    if clip_record["config"]["image_size"] != vae_record["config"]["image_size"]:
        raise ConfigError(f"the CLIP and VAE image sizes differ ({clip_record['config']['image_size']} vs "
                         f"{vae_record['config']['image_size']}) in {out / PART_RECORDS}")  # fmt: skip
    image_size = clip_record["config"]["image_size"]
    started = time.perf_counter()
    eval_pool = PoolPictures.render(seed, eval_size, image_size, first=POOL_FIRST_ID + pool_size)
    clip_dir, unclip_dir = out / CLIP_FOLDER, out / UNCLIP_FOLDER
    encoders = VisionEncoders(clip_dir, unclip_dir, image_size=image_size)
    quality = vision_quality(encoders, eval_pool, retrieval_size)
    log.info("quality: " + ", ".join(f"{k} {v:.3f}" for k, v in quality.items() if isinstance(v, float)))

    folders = [clip_dir] + [unclip_dir / name for name in UNCLIP_VISION_SUBFOLDERS]
    files = file_records(out, folders)
    return {
        "what": "NeuroChat demo vision models: a tiny CLIPModel and AutoencoderKL trained from scratch on SimNSD pool pictures",
        "command": command,
        "seed": seed,
        "pool": {
            "world_seed": seed,
            "train_ids": [POOL_FIRST_ID, POOL_FIRST_ID + pool_size - 1],
            "held_out_ids": [POOL_FIRST_ID + pool_size, POOL_FIRST_ID + pool_size + eval_size - 1],
            "image_size": image_size,
            "render_seconds": clip_record["render_seconds"],
        },
        "components": {
            "clip": {
                "folders": [CLIP_FOLDER, f"{UNCLIP_FOLDER}/image_encoder", f"{UNCLIP_FOLDER}/text_encoder", f"{UNCLIP_FOLDER}/tokenizer",
                            f"{UNCLIP_FOLDER}/feature_extractor"],
                **{k: v for k, v in clip_record.items() if k not in ("render_seconds", "run")},
            },
            "vae": {
                "folders": [f"{UNCLIP_FOLDER}/vae"],
                "latent_shape": list(encoders.latent_shape),
                **{k: v for k, v in vae_record.items() if k not in ("render_seconds", "run")},
            },
        },
        "quality": quality,
        "files": files,
        "total_bytes": sum(record["bytes"] for record in files.values()),
        # one process after the other; `train.demo_bundle --jobs 2` trains the parts side by side
        "total_wall_seconds": round(sum(record["run"]["seconds"] for record in records.values()) + time.perf_counter() - started, 1),
        "environment": {
            "cpu_count": os.cpu_count(),
            "parts": {part: record["run"] for part, record in records.items()},
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE keeps waiting threads from spinning on shared cores
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "diffusers": diffusers.__version__,
            "accelerate": accelerate.__version__,
        },
    }
