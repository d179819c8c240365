"""Mixed precision for training: bf16 autocast of the forward passes, where it pays.

On a CPU with native bf16 dot products (AVX512-BF16 or AMX), one-thread training steps under bf16
autocast took 0.52-0.58x the float32 time for the extractors, 0.59x (stage 0) to 0.76x (stage 2)
for the language model and 0.65-0.68x for the VAE; the UnCLIP UNet's 0.94-0.96x, so it stays
float32 (`python -m neurochat.bench precision`, 2026-12-02). CLIP stays float32 too until measured
on a quiet machine: 0.71x and 0.96x in two bench runs beside other training, and a 40-step training
probe ran as fast either way. The weights, the optimizer and the saved checkpoints stay float32: only
the forward pass (and so its backward) computes matrix products in bf16, as `torch.autocast` does
on a GPU.

Each training loop takes a `mixed_precision` setting ("no" or "bf16") in its config, recorded with
the checkpoint, and opens `autocast(device, mixed_precision)` around its forward pass and loss. Not
accelerate's `Accelerator(mixed_precision=...)`: accelerate keeps one setting per process, and the
demo bundle trains several models, some float32 and some bf16, in one process.
"""

from __future__ import annotations

import contextlib

import torch

from neurochat.errors import ConfigError

MIXED_PRECISIONS = ("no", "bf16")


def check_mixed_precision(value: str) -> str:
    if value not in MIXED_PRECISIONS:
        raise ConfigError(f"mixed_precision={value!r}: choose 'no' (float32) or 'bf16' (bf16 autocast of the forward pass)")
    return value


def autocast(device: torch.device | str, mixed_precision: str):
    """bf16 autocast on `device` for `mixed_precision == "bf16"`; no change for "no"."""
    if check_mixed_precision(mixed_precision) == "no":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether `device` multiplies bf16 natively (a CPU without AVX512-BF16 or AMX emulates it, slower than float32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_mixed_precision(requested: str, device: torch.device | str = "cpu") -> str:
    """"auto" → "bf16" where `device` has native bf16, else "no"; "no" and "bf16" as they are."""
    if requested == "auto":
        return "bf16" if native_bf16(device) else "no"
    return check_mixed_precision(requested)
