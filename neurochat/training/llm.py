"""Training loops of the language side (paper Sec. 3.3–3.4, App. C), on `accelerate`.

    stage 0 (demo only)  causal-LM pretraining of the demo Llama on the extension's text: the paper
                         starts from a pretrained Llama-3-8B, the demo has none (`demo_llm.py`)
    stage 1              f_t only, the LLM frozen ("initially the LLM was frozen, tuning only f_wt")
    stage 2              f_t and the LLM together, fully or through LoRA adapters (peft)

The paper trains each stage for one epoch at lr 2e-5 (App. C). Its fMRI input is the frozen
extractor's penultimate hidden states (Sec. 3.3): they are deterministic, so they are computed once
per run (`extract_fmri`) into OUT/training_state/, not at every step. Train samples read their one
trial; test samples the mean of their repetitions' voxels ("averaged") or the first one ("single"),
as the evaluation protocols of App. C.1.

Resumable: after every epoch (and every `save_every` steps) the model, optimizer, scheduler and
RNG states go to OUT/training_state/; running again with the same OUT continues from there.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from neurochat.errors import ConfigError, DataError
from neurochat.training.fmri_tokens import (  # noqa: F401 — the fMRI input, importable from here as before
    PROTOCOLS,
    FMRIFeatures,
    extract_fmri,
    fmri_key,
)
from neurochat.training.precision import autocast, check_mixed_precision, float32_master_weights
from neurochat.training.schedule import warmup_cosine
from neurochat.language import BRIEF_INSTRUCTIONS, IMAGE_TOKEN, TASKS
from neurochat.models.brainllm import BrainLLM
from neurochat.models.conversation import IGNORE_INDEX, conversation_messages

log = logging.getLogger(__name__)

STATE_DIR = "training_state"
TRAINING_FACTS = "neurochat_training.json"  # stage 0's record, beside the LM's own files


@dataclass(frozen=True)
class LLMTrainConfig:
    """Optimisation settings of one stage (defaults: the paper's, App. C; see `stage_defaults`)."""

    stage: int
    epochs: int = 1  # App. C: one epoch per stage
    lr: float = 2e-5  # App. C
    batch_size: int = 16  # the paper does not say; LLaVA-1.5 uses 16 per GPU in stage 2
    weight_decay: float = 0.0  # LLaVA
    warmup_fraction: float = 0.03  # LLaVA: 3 % linear warm-up, then cosine decay
    grad_clip: float = 1.0
    seed: int = 0
    max_steps: int | None = None  # stop early (budgets, smoke tests)
    save_every: int | None = None  # also save the training state every this many steps
    lora: bool = False  # stage 2 through LoRA adapters instead of all LLM weights
    lora_r: int = 16
    lora_alpha: int = 32
    tasks: tuple[str, ...] = TASKS  # which kinds of extension samples to train on (App. A.2)
    eval_samples: int = 64  # test samples for the validation loss reported at the end
    block_size: int = 512  # stage 0: tokens per packed training block
    group_by_length: bool = True  # stages 1-2: batches of similar length (LLaVA's group_by_modality_length)
    mixed_precision: str = "no"  # "bf16": forward pass and loss under bf16 autocast (neurochat.training.precision)
    gradient_checkpointing: bool = False  # recompute LM activations in the backward pass (Llama-3-8B on one GPU)

    def __post_init__(self):
        if self.stage not in (0, 1, 2):
            raise ConfigError(f"stage={self.stage}: choose 0 (demo LM pretraining), 1 (projector) or 2 (projector + LLM)")
        if self.lora and self.stage != 2:
            raise ConfigError("LoRA adapters belong to stage 2: stage 1 trains the projector only, stage 0 the whole LM")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown or not self.tasks:
            raise ConfigError(f"tasks={list(self.tasks)}: choose among {', '.join(TASKS)}")
        check_mixed_precision(self.mixed_precision)
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError(f"epochs={self.epochs}, batch_size={self.batch_size}, lr={self.lr}: all must be positive")


# Demo settings. A 3.5 M-parameter model trained from scratch needs far larger steps than the paper's
# 2e-5 on a pretrained 8B model: in 150-step runs from one stage-1 model, stage 2 reached a lower
# validation loss at lr 1e-3 than at 3e-4, and full training a lower one than LoRA (r 16).
# Epochs: stage 0 is 156 steps per epoch at batch 16, stages 1 and 2 are 2,318 (37,080 samples);
# see train/llm.py for the time budgets.
DEMO_STAGE_SETTINGS = {
    0: {"lr": 1e-3, "epochs": 4, "batch_size": 16},
    1: {"lr": 1e-3, "epochs": 1, "batch_size": 16},
    2: {"lr": 1e-3, "epochs": 1, "batch_size": 16},
    "2-lora": {"lr": 1e-3, "epochs": 1, "batch_size": 16},
}


def stage_defaults(preset: str, stage: int, lora: bool = False) -> dict:
    """lr, epochs and batch size of a stage: the paper's (App. C) or the demo's."""
    if preset == "paper":
        if stage == 0:
            raise ConfigError("stage 0 pretrains the demo's small LLM; the paper preset starts from Llama-3-8B-Instruct")
        return {"lr": 2e-5, "epochs": 1, "batch_size": 16}
    return dict(DEMO_STAGE_SETTINGS["2-lora" if stage == 2 and lora else stage])


# ---------------------------------------------------------------------------------------------
# fMRI tokens: the frozen extractor's penultimate hidden states, computed once


# ---------------------------------------------------------------------------------------------
# Data sets


class ConversationSet(torch.utils.data.Dataset):
    """Extension samples → (input_ids, labels, fMRI key), encoded on first use and kept (the chat
    template's jinja rendering is the slow part; `lengths()` encodes them all at once)."""

    def __init__(self, samples: Sequence[dict], model: BrainLLM, protocol: str = "averaged"):
        self.samples = list(samples)
        self.tokenizer = model.tokenizer
        self.encode = model.encode
        self.max_length = model.max_context
        self.keys = [fmri_key(s, protocol) for s in self.samples]
        self._encoded: dict[int, tuple[list[int], list[int]]] = {}
        self.truncated = 0
        if not self.samples:
            raise DataError("no language samples to train on (check --tasks and the NSD tree's annotations)")

    def __len__(self) -> int:
        return len(self.samples)

    def lengths(self) -> list[int]:
        """Every sample's token count (encodes them all: the length-grouped sampler needs it)."""
        return [len(self[i]["input_ids"]) for i in range(len(self))]

    def __getitem__(self, index: int) -> dict:
        if index not in self._encoded:
            encoded = self.encode(conversation_messages(self.samples[index]["conversations"]))
            ids, labels = encoded.input_ids, encoded.labels
            if len(ids) > self.max_length:  # right-truncate, as LLaVA does at model_max_length
                ids, labels = ids[: self.max_length], labels[: self.max_length]
                self.truncated += 1
            self._encoded[index] = (ids, labels)
        ids, labels = self._encoded[index]
        return {"input_ids": ids, "labels": labels, "key": self.keys[index]}


def collate_conversations(items: list[dict], pad_token_id: int, features: FMRIFeatures) -> dict:
    """Right-pad a batch: input_ids (B, L), labels (B, L) with IGNORE_INDEX on padding,
    attention_mask (B, L), fmri (B, T, D)."""
    length = max(len(item["input_ids"]) for item in items)
    input_ids = torch.full((len(items), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(items), length), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item["input_ids"])
        input_ids[row, :n] = torch.tensor(item["input_ids"])
        labels[row, :n] = torch.tensor(item["labels"])
        attention_mask[row, :n] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask,
            "fmri": features.batch([item["key"] for item in items])}  # fmt: skip


def pretraining_texts(tokenizer, samples: Sequence[dict]) -> list[str]:
    """Stage 0's documents: each conversation in the chat template without the fMRI placeholder
    (there is no fMRI yet), duplicates removed, in first-seen order."""
    texts = {}
    for sample in samples:
        messages = conversation_messages(sample["conversations"])
        for message in messages:
            message["content"] = message["content"].replace(IMAGE_TOKEN, "").strip()
        texts[tokenizer.apply_chat_template(messages, tokenize=False)] = None
    return list(texts)


def pack_blocks(tokenizer, texts: Sequence[str], block_size: int, *, allow_short: bool = False) -> torch.Tensor:
    """Documents tokenized, concatenated and cut into (n_blocks, block_size) (nanoGPT's packing).
    `allow_short`: less text than one block gives one shorter block (validation sets)."""
    ids = [token for text in texts for token in tokenizer(text, add_special_tokens=False)["input_ids"]]
    n_blocks = len(ids) // block_size
    if n_blocks == 0 and allow_short and len(ids) > 1:
        return torch.tensor(ids)[None]
    if n_blocks == 0:
        raise DataError(f"{len(ids)} tokens of text is less than one block of {block_size}: add subjects or tasks")
    return torch.tensor(ids[: n_blocks * block_size]).reshape(n_blocks, block_size)


class _EpochPermutation(torch.utils.data.Sampler):
    """A fresh seeded order every epoch, drawn from (seed, epoch): runs resume in the same order."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


class _LengthGroupedPermutation(_EpochPermutation):
    """A seeded order whose batches hold samples of similar length, so little of each batch is
    padding (HF's `group_by_length`, LLaVA's `group_by_modality_length`). A random permutation is
    cut into chunks of `group` batches; each chunk is sorted by length and cut into batches; the
    full batches are shuffled and a short last batch stays last, so that the DataLoader's own
    batching of this order reproduces exactly these batches."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, group: int = 50):
        super().__init__(len(lengths), seed)
        self.lengths, self.batch_size, self.group = np.asarray(lengths), batch_size, group

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.n)
        chunk_size = self.batch_size * self.group
        batches = []
        for start in range(0, self.n, chunk_size):
            chunk = order[start : start + chunk_size]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        short = [b for b in batches if len(b) < self.batch_size]  # at most one: the end of the last chunk
        full = [b for b in batches if len(b) == self.batch_size]
        full = [full[i] for i in rng.permutation(len(full))]
        return iter(np.concatenate(full + short).tolist() if batches else [])


# ---------------------------------------------------------------------------------------------
# The loop shared by all stages


def run_training(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    collate: Callable[[list], dict],
    loss_fn: Callable[[torch.nn.Module, dict], torch.Tensor],
    config: LLMTrainConfig,
    out_dir: Path,
    *,
    accelerator: Accelerator,
    progress: bool = True,
) -> dict:
    """AdamW over the parameters that require grad, warm-up + cosine, epochs with state saves.
    Returns {"steps", "history", "seconds", "trainable_parameters"}."""
    set_seed(config.seed)
    if config.group_by_length and hasattr(dataset, "lengths"):
        sampler = _LengthGroupedPermutation(dataset.lengths(), config.batch_size, config.seed)
    else:
        sampler = _EpochPermutation(len(dataset), config.seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, sampler=sampler, collate_fn=collate)
    steps_per_epoch = math.ceil(len(dataset) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("nothing to train: every parameter is frozen")
    if float32_master_weights(trainable):
        log.info("trainable weights loaded in lower precision are trained as float32 masters (bf16 only computes)")
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine(optimizer, int(config.warmup_fraction * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    # Resume from the last saved state, if an earlier run left one
    state_dir = out_dir / STATE_DIR
    history: list[dict] = []
    start_epoch, step, skip = 0, 0, 0
    if (state_dir / "progress.json").exists():
        saved = json.loads((state_dir / "progress.json").read_text())
        if saved.get("config") != _jsonable(asdict(config)):
            raise ConfigError(f"{state_dir} holds the state of a run with other settings; resume with the same options "
                              "or delete that folder to start over")  # fmt: skip
        accelerator.load_state(str(state_dir / "checkpoint"))
        start_epoch, step, skip, history = saved["epoch"], saved["step"], saved["batches_done"], saved["history"]
        log.info("resuming from %s: epoch %d of %d, step %d", state_dir, start_epoch + 1, config.epochs, step)

    def save_state(epoch: int, batches_done: int) -> None:
        accelerator.save_state(str(state_dir / "checkpoint"))
        (state_dir / "progress.json").write_text(json.dumps({"epoch": epoch, "step": step, "batches_done": batches_done,
                                                             "history": history, "config": _jsonable(asdict(config))}))  # fmt: skip

    started = time.perf_counter()
    model.train()
    bar = tqdm(total=total_steps, initial=step, desc=f"stage {config.stage}", unit="step",
               disable=not progress or not accelerator.is_main_process)  # fmt: skip
    for epoch in range(start_epoch, config.epochs):
        if step >= total_steps:
            break
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        # accelerate's loaders pass their own epoch counter to the sampler when iterated: set it
        # to the true epoch, or a resumed run would replay the first epoch's order
        if hasattr(batches, "set_epoch"):
            batches.set_epoch(epoch)
        else:
            sampler.set_epoch(epoch)
        loss_sum, n_batches = 0.0, skip
        for batch in batches:
            if step >= total_steps:
                break
            with autocast(accelerator.device, config.mixed_precision):
                loss = loss_fn(model, batch)
            accelerator.backward(loss)
            if config.grad_clip:
                accelerator.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            n_batches += 1
            loss_sum += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            if config.save_every and step % config.save_every == 0 and step < total_steps:
                save_state(epoch, n_batches)
        skip = 0
        history.append({"epoch": epoch + 1, "step": step, "loss": loss_sum / max(1, n_batches), "batches": n_batches})
        save_state(epoch + 1, 0)  # the next run starts at the next epoch
    bar.close()
    model = _gathered(accelerator, model)
    model.eval()
    return {"steps": step, "history": history, "seconds": round(time.perf_counter() - started, 1),
            "trainable_parameters": sum(p.numel() for p in trainable), "state_dir": str(state_dir)}  # fmt: skip


def _gathered(accelerator: Accelerator, wrapped: torch.nn.Module) -> torch.nn.Module:
    """The trained model, unwrapped; under DeepSpeed ZeRO-3, whose parameters are spread over the
    processes, the main process gets the full weights back (the config's
    `zero3_save_16bit_model: true` lets accelerate gather them), so that it can save them."""
    model = accelerator.unwrap_model(wrapped)
    plugin = getattr(accelerator.state, "deepspeed_plugin", None)
    if plugin is not None and plugin.zero_stage == 3:
        state = accelerator.get_state_dict(wrapped)
        if accelerator.is_main_process:
            model.load_state_dict(state, assign=True)
    return model


def finish(out_dir: Path, accelerator: Accelerator) -> None:
    """Remove the training state once the model is saved."""
    if accelerator.is_main_process:
        shutil.rmtree(out_dir / STATE_DIR, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Stage 0: the demo LM learns the extension's language


def train_language_model(lm, tokenizer, train_samples, test_samples, config: LLMTrainConfig, out_dir, *,
                         accelerator: Accelerator | None = None, progress: bool = True,
                         facts: dict | None = None) -> dict:  # fmt: skip
    """Causal-LM pretraining on packed chat-formatted extension text; saves the LM folder to `out_dir`
    with the training facts (plus `facts`) in neurochat_training.json."""
    out_dir = Path(out_dir)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    block = min(config.block_size, lm.config.max_position_embeddings)
    blocks = pack_blocks(tokenizer, pretraining_texts(tokenizer, train_samples), block)
    val_blocks = pack_blocks(tokenizer, pretraining_texts(tokenizer, test_samples), block, allow_short=True)
    val_blocks = val_blocks[: config.eval_samples]
    log.info(f"stage 0: {len(blocks)} blocks of {block} tokens ({blocks.numel():,} tokens) from {len(train_samples)} samples")

    def loss_fn(model, batch):
        return model(input_ids=batch, labels=batch).loss

    lm.requires_grad_(True)
    result = run_training(lm, blocks, torch.stack, loss_fn, config, out_dir, accelerator=accelerator,
                          progress=progress)  # fmt: skip
    lm = accelerator.unwrap_model(lm)
    result["val_loss"] = _mean_loss(lambda b: loss_fn(lm, b), [val_blocks[i : i + config.batch_size]
                                                               for i in range(0, len(val_blocks), config.batch_size)])  # fmt: skip
    result.update(stage=0, config=asdict(config), train_tokens=int(blocks.numel()), block_size=block, **(facts or {}))
    if accelerator.is_main_process:
        lm.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        (out_dir / TRAINING_FACTS).write_text(json.dumps(_jsonable(result), indent=2) + "\n")
    finish(out_dir, accelerator)
    return result


# ---------------------------------------------------------------------------------------------
# Stages 1 and 2: projector (and LLM) on fMRI conversations


def prepare_stage(model: BrainLLM, config: LLMTrainConfig) -> BrainLLM:
    """Freeze what a stage does not train: stage 1 the whole LM; stage 2 nothing (full) or the
    LM's own weights (LoRA: only adapters and f_t train)."""
    model.projector.requires_grad_(True)
    if config.stage == 1:
        model.lm.requires_grad_(False)
    elif config.lora:
        model.add_lora(r=config.lora_r, alpha=config.lora_alpha)  # peft freezes the base weights
    else:
        model.lm.requires_grad_(True)
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    return model


def train_brainllm(model: BrainLLM, train_samples, test_samples, features: FMRIFeatures, config: LLMTrainConfig,
                   out_dir, *, accelerator: Accelerator | None = None, progress: bool = True) -> dict:  # fmt: skip
    """Stage 1 or 2 on extension samples whose fMRI tokens are in `features`. Returns the training
    facts (the caller saves the model; see `train/llm.py`)."""
    out_dir = Path(out_dir)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    prepare_stage(model, config)
    train_set = ConversationSet([s for s in train_samples if s["task"] in config.tasks], model)
    val_set = ConversationSet([s for s in test_samples if s["task"] in config.tasks][: config.eval_samples], model)

    def collate(items):
        return collate_conversations(items, model.pad_token_id, features)

    def loss_fn(m, batch):
        return m(batch["input_ids"], batch["attention_mask"], batch["fmri"], labels=batch["labels"]).loss

    log.info(f"stage {config.stage}{' (LoRA)' if config.lora else ''}: {len(train_set)} training samples "
        f"({', '.join(config.tasks)}), {sum(p.numel() for p in model.parameters() if p.requires_grad):,} trainable parameters")  # fmt: skip
    result = run_training(model, train_set, collate, loss_fn, config, out_dir, accelerator=accelerator,
                          progress=progress)  # fmt: skip
    device = model.device
    val_batches = [collate([val_set[j] for j in range(i, min(i + config.batch_size, len(val_set)))])
                   for i in range(0, len(val_set), config.batch_size)]  # fmt: skip
    result["val_loss"] = _mean_loss(lambda b: loss_fn(model, {k: v.to(device) for k, v in b.items()}), val_batches)
    result.update(stage=config.stage, config=asdict(config), train_samples=len(train_set),
                  truncated_samples=train_set.truncated)  # fmt: skip
    return result


def example_reply(model: BrainLLM, test_samples, features: FMRIFeatures, max_new_tokens: int = 48) -> dict | None:
    """One greedy brief description of the first test recording, to see what training achieved."""
    if not test_samples:
        return None
    sample = test_samples[0]
    key = fmri_key(sample)
    reply = model.generate(features.batch([key])[0], BRIEF_INSTRUCTIONS[0], max_new_tokens=max_new_tokens)
    return {"sample": sample["id"], "instruction": BRIEF_INSTRUCTIONS[0], "reply": reply.text}


@torch.no_grad()
def _mean_loss(loss_of_batch, batches) -> float | None:
    losses = [float(loss_of_batch(batch)) for batch in batches]
    return float(np.mean(losses)) if losses else None


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))
