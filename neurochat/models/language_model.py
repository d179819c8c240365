"""The causal-LM folder under a BrainLLM: loaded offline, given the fMRI placeholder token and a chat template.

Precision and placement, for the paper's Llama-3-8B (`python -m neurochat.bench memory` counts the bytes):

    dtype=None         bf16 on a GPU (15 GiB for Llama-3-8B), float32 on a CPU
    quantization       "8bit" or "4bit" (NF4, bf16 compute): 8.5 or 5.6 GiB, through bitsandbytes (optional,
                       CUDA only: `pip install bitsandbytes`)
    offload=True       the layers that do not fit on the GPU wait in CPU memory (accelerate's device map)
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import torch
from torch import nn

from neurochat.errors import ConfigError
from neurochat.language import IMAGE_TOKEN

log = logging.getLogger(__name__)

QUANTIZATIONS = ("8bit", "4bit")

# For LMs without a chat template (a base, non-instruct model): the paper's dialogue format, Sec. 3.4.
PAPER_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] | trim }}\n"
    "{% elif message['role'] == 'user' %}{% if not loop.first %}\n{% endif %}<human>: {{ message['content'] | trim }}\n"
    "{% else %}<bot>: {{ message['content'] | trim }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<bot>: {% endif %}"
)


def default_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 on a GPU (half the memory, the precision Llama-3 was released in), float32 on a CPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def check_language_model_folder(lm_dir: str | Path) -> dict:
    """The folder's config.json, or a `ConfigError` that says what the folder is and what to give instead."""
    lm_dir = Path(lm_dir)
    if not (lm_dir / "config.json").exists():
        what = "a diffusers pipeline" if (lm_dir / "model_index.json").exists() else "no model (config.json is missing)"
        raise ConfigError(f"no language model at {lm_dir}: it holds {what}. Give a transformers causal-LM folder with "
                          "its tokenizer (e.g. meta-llama/Meta-Llama-3-8B-Instruct, or the demo's, made by "
                          "`python -m train.llm --stage 0 --preset demo`)")  # fmt: skip
    config = json.loads((lm_dir / "config.json").read_text())
    architectures = config.get("architectures") or []
    if architectures and not any(name.endswith("ForCausalLM") for name in architectures):
        raise ConfigError(f"{lm_dir} holds a {config.get('model_type', '?')} model ({', '.join(architectures)}), not a "
                          "causal language model: point at the LLM's folder (e.g. meta-llama/Meta-Llama-3-8B-Instruct)")  # fmt: skip
    return config


def quantization_config(quantization: str | None, device: str | torch.device):
    """transformers' BitsAndBytesConfig for "8bit" / "4bit" (None: no quantization), or a `ConfigError`
    saying how to get bitsandbytes or what to do without it."""
    if quantization is None:
        return None
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization={quantization!r}: choose {' or '.join(QUANTIZATIONS)}, or none for bf16")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(f"loading the LLM in {quantization} needs bitsandbytes, which is not installed: "
                          "`pip install bitsandbytes` (CUDA GPUs), or load the LLM in bf16 (needs a 24 GB GPU for the "
                          "whole app) or with --offload")  # fmt: skip
    if torch.device(device).type != "cuda":
        raise ConfigError(f"a {quantization} LLM runs on a CUDA GPU only: use --device cuda, or load it unquantized")
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)


def load_language_model(lm_dir: str | Path, *, dtype=None, device: str | torch.device = "cpu",
                        quantization: str | None = None, offload: bool = False):  # fmt: skip
    """(causal LM, tokenizer) from a local folder, with the fMRI placeholder token and a chat template.

    dtype : the weights' precision; default `default_dtype(device)`.
    quantization : "8bit" or "4bit" through bitsandbytes (GPU only), None for `dtype`.
    offload : place the layers that do not fit on the GPU in CPU memory (accelerate's "auto" device map).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm_dir = Path(lm_dir)
    check_language_model_folder(lm_dir)
    device = torch.device(device)
    if offload and device.type != "cuda":
        raise ConfigError("offloading moves LLM layers between the CPU and a GPU: it needs --device cuda")
    dtype = dtype or default_dtype(device)
    tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True)
    kwargs = {"local_files_only": True, "dtype": dtype}
    quantized = quantization_config(quantization, device)
    if quantized is not None:
        kwargs.update(quantization_config=quantized, device_map={"": device.index or 0})
    if offload:
        kwargs["device_map"] = "auto"  # fills the GPU first, the rest of the layers wait in CPU memory
    lm = AutoModelForCausalLM.from_pretrained(lm_dir, **kwargs)
    if "device_map" not in kwargs:
        lm.to(device)
    if not tokenizer.chat_template:
        log.warning("%s has no chat template (a base model, not an instruct one): NeuroChat uses the paper's "
                    "'<human>: ... <bot>: ...' format, which stage 1 and 2 training teach it. For an instruct "
                    "model, copy its original tokenizer_config.json (it holds the template) into the folder.", lm_dir)  # fmt: skip
        tokenizer.chat_template = PAPER_CHAT_TEMPLATE
    add_image_token(lm, tokenizer)
    return lm, tokenizer


def add_image_token(lm: nn.Module, tokenizer, image_token: str = IMAGE_TOKEN) -> None:
    """Add the fMRI placeholder as a special token if the tokenizer lacks it, resizing the LM's
    embeddings. The new row is the mean of the old ones: deterministic, so a reloaded model is
    identical; its input embedding is always replaced by fMRI, and generation suppresses it."""
    from tokenizers import AddedToken

    if image_token in tokenizer.get_vocab():
        return
    tokenizer.add_tokens([AddedToken(image_token, special=True, normalized=False)], special_tokens=True)
    old = lm.get_input_embeddings().weight.shape[0]
    if len(tokenizer) <= old:
        return  # the table already had spare rows (vocab padded to a multiple)
    lm.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for table in {id(t): t for t in (lm.get_input_embeddings(), lm.get_output_embeddings()) if t is not None}.values():
            table.weight[old:] = table.weight[:old].float().mean(dim=0).to(table.weight.dtype)
