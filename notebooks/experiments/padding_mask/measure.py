"""Does the fMRI-LLM's training step pay for its padding mask? Side by side, one thread.

    python notebooks/experiments/padding_mask/measure.py [--steps 4]

For the LLM's stage 1 (f_t through the frozen LM) and stage 2 (LM and f_t), on the precision
bench's right-padded batches, in float32 and under bf16 autocast: one training step with the
padding mask passed to the LM (what `BrainLLM.forward` did before 2026-12-02's evening) and one
without it (what it does now for right-padded batches: the causal mask alone hides the padding),
in turn on the same batches, and the two losses (they must be equal: the padding is never
attended to by a real token and never scored).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time
from pathlib import Path
from unittest import mock

import torch

from neurochat.bench.precision import _models
from neurochat.paths import CHECKPOINTS
from neurochat.training.precision import autocast


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--weights", default=str(CHECKPOINTS / "demo"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name, model, batches, loss_of in _models(Path(args.weights), ["llm_stage1", "llm_stage2"]):
        for precision in ("no", "bf16"):
            copies = {"masked": copy.deepcopy(model).train(), "unmasked": copy.deepcopy(model).train()}
            optimizers = {k: torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4) for k, m in copies.items()}
            times, losses = {"masked": [], "unmasked": []}, {"masked": [], "unmasked": []}
            for i in range(args.steps + 2):
                batch = batches[i % len(batches)]
                for variant in ("masked", "unmasked"):
                    # "masked": the padding mask goes to the LM, as before the change
                    keep_mask = mock.patch("neurochat.models.brainllm.right_padded", return_value=False)
                    with keep_mask if variant == "masked" else contextlib.nullcontext():
                        started = time.perf_counter()
                        with autocast("cpu", precision):
                            loss = loss_of(copies[variant], batch)
                        loss.backward()
                        optimizers[variant].step()
                        optimizers[variant].zero_grad()
                        times[variant].append(time.perf_counter() - started)
                        losses[variant].append(loss.item())
            masked, unmasked = (statistics.median(times[v][2:]) for v in ("masked", "unmasked"))
            print(f"{name} {'float32' if precision == 'no' else 'bf16   '}: with the padding mask {masked:.3f} s/step, "
                  f"without {unmasked:.3f} s/step ({unmasked / masked:.2f}x); first loss {losses['masked'][0]:.5f} vs "
                  f"{losses['unmasked'][0]:.5f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
