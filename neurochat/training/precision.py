"""Mixed precision for training: bf16 autocast of the forward passes, where it pays.

On a CPU with native bf16 dot products (AVX512-BF16 or AMX), a training step under bf16 autocast
is clearly faster than in float32 for the extractors, the language model and the VAE, and barely
faster for the UnCLIP UNet, which therefore stays float32; CLIP stays float32 until a rebuild shows
a gain. `python -m neurochat.bench precision` measures every model's bf16 / float32 step time side
by side (its latest numbers: `reports/benchmarks/precision.json`). The weights, the optimizer and
the saved checkpoints stay float32: only the forward pass (and so its backward) computes matrix
products in bf16, as `torch.autocast` does on a GPU. Trainable weights are float32 masters even when a
model was loaded in bf16 (`float32_master_weights`): never pure-bf16 AdamW.

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


def float32_master_weights(parameters) -> int:
    """Make every trainable parameter float32 in place; returns how many were cast.

    AdamW applied to bf16 weights loses every update smaller than half the weight's rounding step: bf16
    keeps 8 significant bits, so at lr 2e-5 (App. C) nearly every update to a Llama weight would
    vanish. Trainable weights are therefore float32 masters whatever precision the model was loaded
    in; bf16 remains the forward pass's compute (`autocast`) and the storage of frozen weights.
    """
    cast = 0
    for parameter in parameters:
        if parameter.requires_grad and parameter.is_floating_point() and parameter.dtype != torch.float32:
            parameter.data = parameter.data.float()
            cast += 1
    return cast
