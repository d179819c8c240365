"""Training loop of the fMRI feature extractor (paper Sec. 3.2, App. B–C), on `accelerate`.

One model for all subjects (or, for the "w/o C_Subj" baseline, one per subject), MixUp between
repetitions of the same image (App. B), loss Eq. 2, AdamW at lr 5e-4 for 30 epochs at batch 32
(App. C). The same loop runs on a CPU, one GPU, or `accelerate launch` across many.

Resumable: the optimizer, scheduler and RNG state are saved after every epoch under
`OUT/training_state/`; running again with the same OUT continues after the last finished epoch.
The finished model is saved as a self-describing checkpoint (`save_extractor`).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from neurochat.data import MixUpTrainingSet, TrialBank
from neurochat.models.extractor import ExtractorBundle, alignment_loss, save_extractor
from neurochat.targets import ImageTargets
from neurochat.training.precision import autocast, check_mixed_precision
from neurochat.training.schedule import warmup_cosine

log = logging.getLogger(__name__)

STATE_DIR = "training_state"


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: the paper's, App. C)."""

    epochs: int = 30  # App. C
    batch_size: int = 32  # App. C
    lr: float = 5e-4  # App. C
    weight_decay: float = 0.05  # AdamW default for ViTs; the paper does not say
    warmup_fraction: float = 0.05  # linear warm-up, then cosine decay
    grad_clip: float = 1.0
    mixup: bool = True  # App. B
    seed: int = 0
    max_steps: int | None = None  # stop early (smoke tests)
    mixed_precision: str = "no"  # "bf16": forward pass and loss under bf16 autocast (neurochat.training.precision)

    def __post_init__(self):
        check_mixed_precision(self.mixed_precision)


def train_extractor(
    bundle: ExtractorBundle,
    bank: TrialBank,
    targets: ImageTargets,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    accelerator: Accelerator | None = None,
    progress: bool = True,
    save=save_extractor,
) -> dict:
    """Train `bundle.model` on the bank's training trials; save it to `out_dir` with `save(bundle, out_dir)`
    (default: a full checkpoint); return the history."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    accelerator = accelerator or Accelerator(cpu=not torch.cuda.is_available())
    set_seed(config.seed)

    # 1. Data: all subjects' training trials in one set, tokens made per batch
    train_set = MixUpTrainingSet(bank, mixup=config.mixup, seed=config.seed)
    loader = torch.utils.data.DataLoader(
        train_set,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(train_set) > config.batch_size,
        collate_fn=train_set.collate,
        generator=torch.Generator().manual_seed(config.seed),
    )
    steps_per_epoch = len(loader)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)

    # 2. Optimiser: AdamW over the parameters that learn (an adaptation freezes the rest), warm-up then cosine
    model = bundle.model
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = warmup_cosine(optimizer, int(config.warmup_fraction * total_steps), total_steps)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)

    # 3. Resume after the last finished epoch, if an earlier run left its state
    state_dir = out_dir / STATE_DIR
    history: list[dict] = []
    start_epoch, step = 0, 0
    if (state_dir / "progress.json").exists():
        saved = json.loads((state_dir / "progress.json").read_text())
        accelerator.load_state(str(state_dir))
        start_epoch, step, history = saved["epoch"] + 1, saved["step"], saved["history"]
        log.info("resuming from %s: epoch %d of %d, step %d", state_dir, start_epoch + 1, config.epochs, step)

    # 4. Epochs
    started = time.perf_counter()
    bar = tqdm(total=total_steps, initial=step, disable=not progress or not accelerator.is_main_process,
               desc="extractor", unit="step")  # fmt: skip
    for epoch in range(start_epoch, config.epochs):
        if step >= total_steps:
            break
        train_set.set_epoch(epoch)  # new MixUp partners and λ every epoch
        sums = {"loss": 0.0, "clip": 0.0, "vae": 0.0}
        batches = 0
        for batch in loader:
            if step >= total_steps:
                break
            tokens = bundle.tokens(batch["tokens"])
            clip_target, vae_target = targets.batch(batch["nsd_id"], device=tokens.device)
            with autocast(tokens.device, config.mixed_precision):
                output = model(tokens)
                loss, clip_term, vae_term = alignment_loss(output, clip_target, vae_target, bundle.config.alpha)
            accelerator.backward(loss)
            if config.grad_clip:
                accelerator.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            step += 1
            batches += 1
            for key, value in (("loss", loss.item()), ("clip", clip_term.item()), ("vae", vae_term.item())):
                sums[key] += value
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.4f}")
        record = {"epoch": epoch + 1, "step": step, **{k: v / max(1, batches) for k, v in sums.items()}}
        history.append(record)
        # save after every epoch so an interrupted run resumes here
        accelerator.save_state(str(state_dir))
        (state_dir / "progress.json").write_text(json.dumps({"epoch": epoch, "step": step, "history": history}))
    bar.close()

    # 5. The finished model, self-describing; the optimizer state is no longer needed
    bundle.model = accelerator.unwrap_model(model).eval()
    bundle.info = {
        **bundle.info,
        "train": asdict(config),
        "steps": step,
        "train_trials": len(train_set),
        "subjects": list(bank.subjects),
        "history": history,
        "train_seconds_this_run": round(time.perf_counter() - started, 1),
    }
    if accelerator.is_main_process:
        save(bundle, out_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
    return bundle.info
