"""Conversations as the fMRI-LLM reads them (Sec. 3.4): chat messages → token ids and labels, and the
splice of the projected fMRI tokens into the embedded sequence.

    "<human>: <image>\\n[instruction] <bot>: [answer]" in the LM's own chat template: the one <image>
    of the first user turn becomes T placeholder ids (`encode_conversation`) whose embeddings are
    replaced by the projected fMRI tokens (`splice_fmri`); labels are IGNORE_INDEX except on the
    assistant's answers, so the loss is Eq. 3's, every answer conditioned on all turns before it.

Training and generation encode through the same function, so both see the same token boundaries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from neurochat.errors import ConfigError, DataError
from neurochat.language import IMAGE_TOKEN

IGNORE_INDEX = -100  # labels that the loss skips: prompt, chat markup and fMRI positions
ROLES = ("system", "user", "assistant")


@dataclass
class EncodedConversation:
    """One conversation as LM input: the placeholder already expanded to T ids."""

    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX except on the assistant's answers (and the end-of-turn that closes each)


def conversation_messages(conversations: Sequence[dict]) -> list[dict]:
    """LLaVA's {"from": "human"|"gpt", "value"} turns → chat messages {"role", "content"}."""
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    try:
        return [{"role": roles[turn["from"]], "content": turn["value"]} for turn in conversations]
    except KeyError as error:
        raise DataError(f"a conversation turn lacks or misnames {error}: LLaVA turns are "
                        "{'from': 'human'|'gpt', 'value': text}") from None  # fmt: skip


def check_messages(messages: Sequence[dict], tokenizer, image_token: str, *, ends_with: str) -> None:
    """Refuse conversations the model cannot read, with the reason (the rules: `neurochat.models.brainllm`)."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise DataError("the conversation is empty: give at least one user message")
    control = [t for t in tokenizer.all_special_tokens if t != image_token]
    expected = "user"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise DataError(f"message {index} is {message!r}; each message is {{'role': 'user'|'assistant'|'system', "
                            "'content': text}")  # fmt: skip
        role, content = message["role"], message["content"]
        if role == "system" and index == 0:
            continue
        if role != expected:
            raise DataError(f"message {index} is from {role!r} where a {expected!r} turn was expected: turns alternate "
                            "user, assistant, user, ... (an optional system message first)")  # fmt: skip
        expected = "assistant" if role == "user" else "user"
        # an earlier blank answer is what the model said (a tiny or untrained LM can stop at once):
        # keep reading the conversation; a blank question, or a blank answer to train on, is refused
        blank_answer_in_history = role == "assistant" and index < len(messages) - 1
        if not content.replace(image_token, "").strip() and not blank_answer_in_history:
            what = "the message" if index == len(messages) - 1 else f"message {index} ({role})"
            raise DataError(f"{what} is empty: ask something about the recording, e.g. 'Describe the image briefly.'")
        found = [t for t in control if t in content]
        if found:
            raise DataError(f"message {index} contains {found[0]!r}, a control token of the model's chat format; remove it")
    if messages[-1]["role"] != ends_with:
        raise DataError(f"the conversation ends with a {messages[-1]['role']!r} turn; expected {ends_with!r}")
    placements = [(i, m["content"].count(image_token)) for i, m in enumerate(messages) if image_token in m["content"]]
    first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
    if placements != [(first_user, 1)]:
        raise DataError(f"the fMRI placeholder {image_token} must appear exactly once, in the first user message; "
                        f"found it in messages {[i for i, _ in placements] or 'none'}")  # fmt: skip


def with_placeholder(messages: Sequence[dict], image_token: str = IMAGE_TOKEN) -> list[dict]:
    """The conversation with the fMRI placeholder at the start of the first user message, where
    training put it (App. A.2), unless the caller already placed it."""
    messages = [dict(m) for m in messages]
    if any(isinstance(m, dict) and image_token in str(m.get("content", "")) for m in messages):
        return messages
    for message in messages:
        if isinstance(message, dict) and message.get("role") == "user":
            message["content"] = f"{image_token}\n{message.get('content', '')}"
            break
    return messages


def encode_conversation(tokenizer, messages: Sequence[dict], n_fmri_tokens: int, image_token: str = IMAGE_TOKEN,
                        *, add_generation_prompt: bool = False) -> EncodedConversation:  # fmt: skip
    """Token ids and labels of a conversation, the placeholder expanded to `n_fmri_tokens` ids.

    The chat template is rendered for every prefix of the conversation, and the text each prefix
    adds is tokenized on its own: the parts up to each assistant turn (prompt and markup: label
    IGNORE_INDEX) and each assistant answer with the markup that closes it (labels = ids, so the
    model learns to stop). Prompts at inference are encoded by this same function, so training
    and generation see the same token boundaries.
    """
    check_messages(messages, tokenizer, image_token, ends_with="user" if add_generation_prompt else "assistant")
    image_id = tokenizer.convert_tokens_to_ids(image_token)

    def render(prefix, generation_prompt: bool) -> str:
        return tokenizer.apply_chat_template(list(prefix), add_generation_prompt=generation_prompt, tokenize=False)

    input_ids: list[int] = []
    labels: list[int] = []
    rendered = ""

    def take(text: str, is_answer: bool) -> None:
        nonlocal rendered
        if not text.startswith(rendered):
            raise ConfigError("the tokenizer's chat template does not render a conversation as a prefix of the "
                              "conversation one turn longer; BrainLLM needs that to find the answers")  # fmt: skip
        ids = tokenizer(text[len(rendered):], add_special_tokens=False)["input_ids"]
        input_ids.extend(ids)
        labels.extend(ids if is_answer else [IGNORE_INDEX] * len(ids))
        rendered = text

    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            take(render(messages[:index], True), False)
            take(render(messages[: index + 1], False), True)
    take(render(messages, add_generation_prompt), False)

    # <image> → T placeholder ids; their labels stay IGNORE_INDEX
    positions = [i for i, token in enumerate(input_ids) if token == image_id]
    if len(positions) != 1:
        raise ConfigError(f"the tokenizer split the placeholder {image_token} into {len(positions)} tokens (expected "
                          "one special token): load the model with BrainLLM, which adds it")  # fmt: skip
    p = positions[0]
    input_ids[p : p + 1] = [image_id] * n_fmri_tokens
    labels[p : p + 1] = [IGNORE_INDEX] * n_fmri_tokens
    return EncodedConversation(input_ids, labels)


def splice_fmri(inputs_embeds: torch.Tensor, input_ids: torch.Tensor, fmri_embeds: torch.Tensor,
                image_token_id: int) -> torch.Tensor:  # fmt: skip
    """Put each sample's T projected fMRI tokens at its T placeholder positions, in order.

    inputs_embeds (B, L, E), input_ids (B, L), fmri_embeds (B, T, E) → (B, L, E). `masked_scatter`
    fills the masked positions in row-major order, so row b's placeholders receive fmri_embeds[b]
    (what Hugging Face's Llava does).
    """
    mask = input_ids == image_token_id  # (B, L)
    counts = mask.sum(dim=1)
    if fmri_embeds.ndim != 3 or len(fmri_embeds) != len(input_ids) or bool((counts != fmri_embeds.shape[1]).any()):
        raise DataError(f"cannot splice fMRI embeddings of shape {tuple(fmri_embeds.shape)} into a batch of "
                        f"{len(input_ids)} sequences with {counts.tolist()} placeholder tokens each")  # fmt: skip
    mask = mask.unsqueeze(-1).expand_as(inputs_embeds)  # (B, L, E)
    return inputs_embeds.masked_scatter(mask, fmri_embeds.to(inputs_embeds.dtype))


def as_conversations(messages, batch: int) -> list[list[dict]]:
    """A string, one conversation, or `batch` conversations → `batch` conversations."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if isinstance(messages, (list, tuple)) and messages and all(isinstance(m, (list, tuple)) for m in messages):
        if len(messages) != batch:
            raise DataError(f"{len(messages)} conversations for {batch} fMRI recordings: give one conversation per "
                            "recording, or a single conversation for all")  # fmt: skip
        return [list(m) for m in messages]
    if not isinstance(messages, (list, tuple)):
        raise DataError(f"messages must be a string or a list of {{'role', 'content'}} dicts, not {type(messages).__name__}")
    return [list(messages)] * batch
