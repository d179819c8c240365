"""The causal-LM folder under a BrainLLM: loaded offline, given the fMRI placeholder token and a chat template."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from neurochat.errors import ConfigError
from neurochat.language import IMAGE_TOKEN

log = logging.getLogger(__name__)

# For LMs without a chat template (a base, non-instruct model): the paper's dialogue format, Sec. 3.4.
PAPER_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] | trim }}\n"
    "{% elif message['role'] == 'user' %}{% if not loop.first %}\n{% endif %}<human>: {{ message['content'] | trim }}\n"
    "{% else %}<bot>: {{ message['content'] | trim }}{{ eos_token }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}<bot>: {% endif %}"
)


def load_language_model(lm_dir: str | Path, *, dtype=None, device: str | torch.device = "cpu"):
    """(causal LM, tokenizer) from a local folder, with the fMRI placeholder token and a chat template."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm_dir = Path(lm_dir)
    if not (lm_dir / "config.json").exists():
        raise ConfigError(f"no language model at {lm_dir} (config.json is missing): give a transformers causal-LM folder "
                          "(e.g. the demo's, made by `python -m train.llm --stage 0 --preset demo`)")  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(lm_dir, local_files_only=True)
    lm = AutoModelForCausalLM.from_pretrained(lm_dir, local_files_only=True, dtype=dtype or torch.float32)
    lm.to(device)
    if not tokenizer.chat_template:
        log.warning("%s has no chat template: using the paper's '<human>: ... <bot>: ...' format", lm_dir)
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
            table.weight[old:] = table.weight[:old].mean(dim=0)
