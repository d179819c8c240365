"""The demo CLIP: its config, a deterministic byte-level BPE tokenizer, the model, and its contrastive training.

Localization (Sec. 4.4) asks the text tower for bare concept names, so besides captions the
training shows it concept prompts ("cat", "a photo of a beach"), with every picture that holds the
concept counted as a positive (`multi_positive_contrastive_loss`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from neurochat.models.vision import ClipPreprocessing, images_to_unit_float
from neurochat.training.schedule import warmup_cosine
from neurochat.training.vision.common import LOSS_WINDOW, PoolPictures, TrainingRun, out_of_time
from neurochat.vocabulary import CONCEPT_NAMES, OBJECTS

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
    """The demo CLIP: architecture, then training (the vision manifest records how long the defaults took)."""

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


def image_normalisation(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 (N, H, W, 3) pictures in [0, 1] units (CLIP's image_mean/std)."""
    pixels = images.reshape(-1, 3).astype(np.float64) / 255.0  # (N·H·W, 3)
    return tuple(float(v) for v in pixels.mean(0)), tuple(float(v) for v in pixels.std(0))


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
        if out_of_time(accelerator, started, config.max_seconds):
            break
    model.eval()
    return TrainingRun(len(losses), time.perf_counter() - started, float(np.mean(losses[-LOSS_WINDOW:])), losses)


def _decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only; biases, norms, embeddings' scales and the temperature are left alone."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
