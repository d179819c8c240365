"""Training the demo's vision models from scratch on SimNSD pool pictures: a tiny CLIP and a tiny VAE.

The paper's reconstruction path (Sec. 3.2, Eq. 4) needs a CLIP image embedding that conditions
Stable unCLIP, and the Stable Diffusion VAE whose latent the extractor predicts; localization
(Sec. 4.4) needs CLIP text embeddings of concept names. The demo preset keeps that exact
structure at toy scale: a `transformers.CLIPModel` on 64×64 pictures and a `diffusers.AutoencoderKL`
with 4×16×16 latents, trained here on the CPU in about half an hour, and saved in the same folder
formats as `openai/clip-vit-large-patch14` and `stable-diffusion-2-1-unclip-small`, so the demo
loads through the same code as the paper preset (`neurochat.models.vision.VisionEncoders`).

Training pictures come from the SimNSD pool (`neurochat.sim.pool`), whose ids never meet a SimNSD
tree's, so no fMRI test picture is seen here — as the paper's CLIP and VAE never saw NSD.

The loops run on `accelerate`, so the same code trains on a CPU, one GPU or several: each process
draws its own random batches (seeded by seed and process index) and DDP averages the gradients.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neurochat.errors import ConfigError
from neurochat.manifest import file_records
from neurochat.metrics import roc_auc
from neurochat.models.vision import ClipPreprocessing, VisionEncoders, images_to_unit_float
from neurochat.vocabulary import CONCEPT_NAMES, OBJECTS, SCENES
from neurochat.sim.pool import POOL_FIRST_ID, pool_scenes, render_images
from neurochat.training.precision import autocast, check_mixed_precision
from neurochat.training.schedule import warmup_cosine

# CLIP's byte-level BPE conventions (transformers' CLIPTokenizer builds the same pipeline).
BOS_TOKEN, EOS_TOKEN = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
CLIP_SPLIT_PATTERN = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

# Short texts the text tower must embed well besides captions: localization asks for a concept by
# name (paper Sec. 4.4, `Locating the concept of "<object>"`), often wrapped in a prompt.
CONCEPT_TEMPLATES = ("{}", "{}", "a {}", "a photo of a {}", "a picture of a {}", "the {}")  # bare name twice as likely
REQUEST_PHRASES = (
    "a photo of", "a picture of", "an image of", "where is the", "locating the concept of", "show me the",
    "remove the", "reconstruct the image", "describe the picture", "what is in this scene",
    "provide the corresponding stable diffusion prompts for the image", "object", "concept", "brain", "left", "right",
)


@dataclass(frozen=True)
class ClipConfig:
    """The demo CLIP: architecture, then training. Defaults take ~15 min on 2 CPU cores."""

    image_size: int = 64  # SimNSD pool pictures are rendered at this size
    patch_size: int = 8  # 8×8 patches of 8 px: an object (13-36 px) covers several
    hidden_size: int = 128  # both towers; ~1.6M parameters in all
    intermediate_size: int = 512  # MLP width, 4× hidden as in ViT
    vision_layers: int = 4
    text_layers: int = 3  # captions are short and the vocabulary small; keeps the weights under ~15 MB
    attention_heads: int = 4
    projection_dim: int = 128  # clip_dim of the demo (768 for the paper's ViT-L/14)
    max_text_length: int = 32  # tokens incl. bos/eos; the longest pool caption has ~22
    tokenizer_vocab_size: int = 2048  # BPE cap; the pool's small vocabulary stops far below it
    batch_size: int = 128  # pictures (and texts) per step and process; contrastive learning wants big batches
    steps: int = 1500
    learning_rate: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on weight matrices only (CLIP: 0.2 at far larger scale)
    adam_betas: tuple[float, float] = (0.9, 0.98)  # CLIP's β2 for stability with large logits
    adam_epsilon: float = 1e-6  # CLIP's
    max_logit_scale: float = 100.0  # CLIP clips its learned temperature at 100
    concept_text_probability: float = 0.4  # share of texts that are a concept prompt instead of a caption
    max_seconds: float | None = None  # stop early after this much training time (the schedule is not shortened)


@dataclass(frozen=True)
class VaeConfig:
    """The demo VAE: 64×64 pictures ↔ 4×16×16 latents. Defaults take ~15 min on 2 CPU cores."""

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


@dataclass
class PoolPictures:
    """Pool pictures with their captions and concepts."""

    image_ids: list[int]
    images: np.ndarray  # uint8 (N, S, S, 3)
    captions: list[list[str]]  # five per picture
    concepts: list[list[str]]  # object names, then the scene word

    @classmethod
    def render(cls, seed: int, n: int, size: int, first: int = POOL_FIRST_ID) -> "PoolPictures":
        """Pool pictures `first` .. `first + n - 1` of the world with `seed`, rendered at `size`."""
        scenes = pool_scenes(seed, n, first=first)
        return cls([s.image_id for s in scenes], render_images(scenes, size), [s.captions for s in scenes], [s.concepts for s in scenes])

    def __len__(self) -> int:
        return len(self.image_ids)


@dataclass
class TrainingRun:
    """What one training loop did."""

    steps: int
    wall_seconds: float
    final_loss: float  # mean over the last `LOSS_WINDOW` steps
    losses: list[float] = field(repr=False)


LOSS_WINDOW = 50  # steps averaged for the reported final loss


# ---------------------------------------------------------------------------------------------
# Tokenizer and models


def tokenizer_corpus(pool: PoolPictures) -> list[str]:
    """Every text the demo's CLIP tokenizer must know: captions, concept names and prompts, request words."""
    names = list(CONCEPT_NAMES) + [concept.plural_name for concept in OBJECTS]
    prompts = [template.format(name) for name in CONCEPT_NAMES for template in CONCEPT_TEMPLATES]
    return [caption for captions in pool.captions for caption in captions] + names + prompts + list(REQUEST_PHRASES)


def build_tokenizer(corpus: list[str], config: ClipConfig):
    """A `CLIPTokenizer` with a byte-level BPE learned offline on `corpus`.

    Same normaliser, pre-tokeniser and `</w>` end-of-word convention as OpenAI's CLIP vocabulary.
    The merges are learned here rather than by `tokenizers`' BpeTrainer, which breaks ties between
    equally frequent pairs in hash order and so gives different ids on every run; here a tie goes to
    the alphabetically first pair, and the same corpus always gives the same tokenizer.
    """
    from collections import Counter

    from tokenizers import Regex, normalizers, pre_tokenizers
    from transformers import CLIPTokenizer

    normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT_PATTERN), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    word_counts = Counter(
        piece for text in corpus for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))
    )
    # each word as its symbols, the last one marked as word-final
    words = {word: [*word[:-1], word[-1] + END_OF_WORD] for word in sorted(word_counts) if word}
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    base = alphabet + [char + END_OF_WORD for char in alphabet]  # every byte, so no text needs the unknown token
    merges: list[tuple[str, str]] = []
    while len(base) + len(merges) + 2 < config.tokenizer_vocab_size:
        pair_counts: Counter = Counter()
        for word, symbols in words.items():
            for pair in zip(symbols, symbols[1:]):
                pair_counts[pair] += word_counts[word]
        if not pair_counts:
            break  # every word is one token
        best = min(pair_counts, key=lambda pair: (-pair_counts[pair], pair))
        merges.append(best)
        for word, symbols in words.items():
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            words[word] = merged
    # numbered as OpenAI's CLIP vocabulary is: bytes, word-final bytes, one token per merge, specials
    symbols = base + ["".join(merge) for merge in merges] + [BOS_TOKEN, EOS_TOKEN]
    vocab = {symbol: index for index, symbol in enumerate(dict.fromkeys(symbols))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=config.max_text_length)


def build_clip(config: ClipConfig, tokenizer):
    """A randomly initialised `CLIPModel` for `config`, its text side sized for `tokenizer`."""
    from transformers import CLIPConfig, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    shared = dict(
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_attention_heads=config.attention_heads,
        projection_dim=config.projection_dim,
    )
    vision = CLIPVisionConfig(num_hidden_layers=config.vision_layers, image_size=config.image_size, patch_size=config.patch_size, **shared)
    text = CLIPTextConfig(
        num_hidden_layers=config.text_layers,
        vocab_size=len(tokenizer),
        max_position_embeddings=config.max_text_length,
        # explicit ids: the text tower pools at the first eos token (an eos id of 2 would select
        # transformers' legacy argmax pooling)
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **shared,
    )
    return CLIPModel(CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=config.projection_dim))


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


def image_normalisation(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, H, W, 3) pictures in [0, 1] units (CLIP's image_mean/std)."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0  # (N·H·W, 3)
    return tuple(float(v) for v in pixels.mean(0)), tuple(float(v) for v in pixels.std(0))


def count_parameters(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


# ---------------------------------------------------------------------------------------------
# CLIP training


def sample_texts(pool: PoolPictures, indices: np.ndarray, rng: np.random.Generator, config: ClipConfig) -> tuple[list[str], torch.Tensor]:
    """One text per picture of the batch, and which pictures each text truly describes.

    Most texts are one of the picture's captions; with `concept_text_probability` a text is instead a
    concept prompt ("cat", "a photo of a beach") for one object or the scene of the picture, so the
    text tower learns to embed bare concept names, as localization queries them.

    Returns
    -------
    texts : list of str, one per picture
    positives : bool (B_images, B_texts)
        True where the text describes the picture: the diagonal, and every picture that holds a
        prompt's concept (two pictures with a cat both match "cat", which a plain CLIP loss would
        push apart).
    """
    batch = len(indices)
    positives = torch.eye(batch, dtype=torch.bool)  # (B_images, B_texts)
    texts = []
    for column, index in enumerate(indices):
        if rng.random() < config.concept_text_probability:
            concept = pool.concepts[index][rng.integers(len(pool.concepts[index]))]
            texts.append(CONCEPT_TEMPLATES[rng.integers(len(CONCEPT_TEMPLATES))].format(concept))
            positives[:, column] = torch.tensor([concept in pool.concepts[other] for other in indices])
        else:
            captions = pool.captions[index]
            texts.append(captions[rng.integers(len(captions))])
    return texts, positives


def multi_positive_contrastive_loss(logits_per_image: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy when a text may match several pictures.

    Each row (image → texts) and each column (text → images) is a softmax whose target spreads
    evenly over its positives; with `positives` the identity this is exactly CLIP's loss.

    Parameters
    ----------
    logits_per_image : float (B_images, B_texts), scaled cosine similarities
    positives : bool (B_images, B_texts), at least one True per row and per column
    """
    targets = positives.to(logits_per_image.dtype)
    image_to_text = -(targets / targets.sum(1, keepdim=True) * logits_per_image.log_softmax(1)).sum(1).mean()
    text_to_image = -(targets / targets.sum(0, keepdim=True) * logits_per_image.log_softmax(0)).sum(0).mean()
    return (image_to_text + text_to_image) / 2


def train_clip(model, tokenizer, pool: PoolPictures, preprocessing: ClipPreprocessing, config: ClipConfig, *, seed: int,
               accelerator=None, progress: bool = True) -> TrainingRun:
    """Train `model` contrastively on (pool picture, caption or concept prompt) pairs, in place."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = accelerator or Accelerator()
    set_seed(seed)
    optimizer = torch.optim.AdamW(
        _decay_groups(model, config.weight_decay), lr=config.learning_rate, betas=config.adam_betas, eps=config.adam_epsilon
    )
    # stepped by hand once per optimizer step (accelerate's prepared scheduler steps once per process)
    scheduler = warmup_cosine(optimizer, config.warmup_steps, config.steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    unwrapped = accelerator.unwrap_model(model)
    rng = np.random.default_rng([seed, accelerator.process_index])  # each process its own batches

    model.train()
    losses, started = [], time.perf_counter()
    bar = tqdm(range(config.steps), desc="clip", disable=not (progress and accelerator.is_local_main_process))
    for _ in bar:
        indices = rng.integers(len(pool), size=config.batch_size)
        texts, positives = sample_texts(pool, indices, rng, config)
        tokens = tokenizer(texts, padding=True, truncation=True, max_length=config.max_text_length, return_tensors="pt")
        pixel_values = preprocessing(images_to_unit_float(pool.images[indices]))  # (B, 3, S, S)
        outputs = model(
            input_ids=tokens.input_ids.to(accelerator.device),
            attention_mask=tokens.attention_mask.to(accelerator.device),
            pixel_values=pixel_values.to(accelerator.device),
        )
        loss = multi_positive_contrastive_loss(outputs.logits_per_image, positives.to(accelerator.device))
        accelerator.backward(loss)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():  # CLIP clips its temperature so the logits cannot blow up
            unwrapped.logit_scale.clamp_(max=math.log(config.max_logit_scale))
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{unwrapped.logit_scale.exp().item():.1f}")
        if _out_of_time(accelerator, started, config.max_seconds):
            break
    model.eval()
    return TrainingRun(len(losses), time.perf_counter() - started, float(np.mean(losses[-LOSS_WINDOW:])), losses)


# ---------------------------------------------------------------------------------------------
# VAE training


class _VaeWithKl(nn.Module):
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
    wrapper = _VaeWithKl(vae)
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
        if _out_of_time(accelerator, started, config.max_seconds):
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


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only; biases, norms, embeddings' scales and the temperature are left alone."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _out_of_time(accelerator, started: float, max_seconds: float | None) -> bool:
    """Whether the time budget is spent; every process takes the same decision (or DDP would hang)."""
    if max_seconds is None:
        return False
    spent = torch.tensor(float(time.perf_counter() - started > max_seconds), device=accelerator.device)
    return bool(accelerator.reduce(spent, reduction="sum").item() > 0)


# ---------------------------------------------------------------------------------------------
# Saving in the standard folder layouts

CLIP_FOLDER = "clip"
UNCLIP_FOLDER = "unclip"
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


# ---------------------------------------------------------------------------------------------
# Quality on held-out pool pictures


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


# ---------------------------------------------------------------------------------------------
# The whole demo vision build


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
    log=print,
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
    log(f"{part}: rendering {pool_size} training pool pictures (seed {seed}) ...")
    train_pool = PoolPictures.render(seed, pool_size, config.image_size)
    record = {"config": asdict(config), "render_seconds": round(time.perf_counter() - started, 1)}

    torch.manual_seed(seed)
    if part == "clip":
        tokenizer = build_tokenizer(tokenizer_corpus(train_pool), clip_config)
        mean, std = image_normalisation(train_pool.images)
        preprocessing = ClipPreprocessing(clip_config.image_size, clip_config.image_size, clip_config.image_size, mean, std)
        clip = build_clip(clip_config, tokenizer)
        log(f"CLIP: {count_parameters(clip):,} parameters, vocabulary {len(tokenizer)}, {clip_config.steps} steps")
        run = train_clip(clip, tokenizer, train_pool, preprocessing, clip_config, seed=seed, accelerator=accelerator, progress=progress)
        clip = clip.cpu()  # trained in place; prepare() only wrapped it
        record.update(parameters=count_parameters(clip), vocabulary=len(tokenizer), image_mean=list(mean), image_std=list(std))
        log(f"CLIP: {run.steps} steps in {run.wall_seconds:.0f} s, final loss {run.final_loss:.3f}")
    else:
        vae = build_vae(vae_config)
        log(f"VAE: {count_parameters(vae):,} parameters, {vae_config.steps} steps")
        run = train_vae(vae, train_pool, vae_config, seed=seed, accelerator=accelerator, progress=progress)
        vae = vae.cpu().eval()
        scaling_factor = latent_scaling_factor(vae, train_pool.images[: vae_config.scaling_samples])
        vae.register_to_config(scaling_factor=scaling_factor)
        record.update(parameters=count_parameters(vae), scaling_factor=scaling_factor)
        log(f"VAE: {run.steps} steps in {run.wall_seconds:.0f} s, final loss {run.final_loss:.4f}, scaling factor {scaling_factor:.4f}")
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
                       retrieval_size: int = 200, command: str = "", log=print) -> dict:  # fmt: skip
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
    log("quality: " + ", ".join(f"{k} {v:.3f}" for k, v in quality.items() if isinstance(v, float)))

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
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),  # PASSIVE avoids a 5× slowdown on shared cores
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "diffusers": diffusers.__version__,
            "accelerate": accelerate.__version__,
        },
    }
