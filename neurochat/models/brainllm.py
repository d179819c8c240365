"""BrainLLM: the frozen extractor's fMRI tokens, a projector f_t and a causal LM, LLaVA-style.

    penultimate hidden states h^{N_b−1} of the extractor   (B, T, D),  T = 1 + N   (Sec. 3.3)
        ──f_t: Linear, GELU, Linear──>  t                 (B, T, E),  E = the LM's embedding size
    the conversation in the LM's own chat template, "<human>: <image>\\n[instruction] <bot>: [answer]"
    (Sec. 3.4): the one <image> of the first user turn becomes T placeholder ids whose embeddings
    are replaced by t (`splice_fmri`); the loss is next-token cross-entropy on the assistant's
    answers only, every answer of a multi-turn dialogue conditioned on all turns before it (Eq. 3).

Works with any causal-LM folder (the demo's small Llama, Meta-Llama-3-8B-Instruct, a tiny random
Llama in tests): the placeholder token is added (and the embedding table resized) when the
tokenizer lacks it; a tokenizer without a chat template gets the paper's "<human>: ... <bot>: ..."
format (`PAPER_CHAT_TEMPLATE`).

A saved BrainLLM is a folder:

    brainllm.json          BrainLLMConfig: fMRI token shape, extractor it was trained with, training facts
    projector.safetensors  f_t
    llm/                   the LM and its tokenizer (`save_pretrained`), when its weights changed ...
    lora/                  ... or LoRA adapters (peft) over the base LM that brainllm.json names

Input to `generate` / `stream`: messages as typed (the fMRI placeholder is put at the start of the
first user message, where training put it, unless the caller placed it). Bad input is refused with
a sentence (`DataError`), never silently changed, with one documented exception: a conversation
longer than the context loses its oldest exchanges after the fMRI turn, and the reply's `notes`
say so. A single message too long to fit is refused (the model would otherwise answer a question
it never fully read): the user shortens it.

Beside this file: `conversation` (messages → ids and labels, the splice), `generation` (replies,
streams, `NamesEachConceptOnce`) and `language_model` (loading the LM folder).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from neurochat.errors import ConfigError, DataError
from neurochat.language import IMAGE_TOKEN
from neurochat.models.conversation import (
    IGNORE_INDEX,
    EncodedConversation,
    as_conversations,
    encode_conversation,
    splice_fmri,
    with_placeholder,
)
from neurochat.models.generation import ChatStream, NamesEachConceptOnce, Reply, until_stop
from neurochat.models.language_model import load_language_model

# The rest of the fMRI-LLM's interface, importable from here as before the split.
from neurochat.models.conversation import conversation_messages  # noqa: F401
from neurochat.models.language_model import PAPER_CHAT_TEMPLATE, add_image_token  # noqa: F401

PROJECTOR_TYPES = ("mlp2x_gelu",)  # the paper's f_t: a two-layer perceptron (Sec. 3.3)
FORMAT = "neurochat.brainllm/1"
CONFIG_NAME = "brainllm.json"
PROJECTOR_NAME = "projector.safetensors"
LLM_DIR = "llm"
ADAPTER_DIR = "lora"
DEFAULT_MAX_NEW_TOKENS = 128
FALLBACK_CONTEXT = 2048  # for an LM config that does not state max_position_embeddings


def build_projector(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """f_t: fMRI hidden size → LM embedding size. "mlp2x_gelu" is LLaVA-1.5's and the paper's
    two-layer perceptron (Linear, GELU, Linear)."""
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim))
    raise ConfigError(f"unknown projector {kind!r}: choose one of {', '.join(PROJECTOR_TYPES)}")


@dataclass(frozen=True)
class BrainLLMConfig:
    """What a BrainLLM folder needs besides weights; written as brainllm.json."""

    fmri_hidden: int  # D: the extractor's hidden size
    n_fmri_tokens: int  # T = 1 + N: CLS + patch tokens of the extractor's penultimate layer
    projector: str = "mlp2x_gelu"
    image_token: str = IMAGE_TOKEN  # the fMRI placeholder of the first user turn (Sec. 3.4)
    max_context: int | None = None  # tokens the LM reads at most; None: its max_position_embeddings
    extractor: dict = field(default_factory=dict)  # the checkpoint that made the fMRI tokens (`extractor_facts`)
    language_model: str = LLM_DIR  # the LM folder, relative to the BrainLLM folder (or absolute)
    language_model_absolute: str | None = None  # the same folder as an absolute path (if it moved)
    adapter: str | None = None  # LoRA adapter folder, relative to the BrainLLM folder; None: no adapter
    training: dict = field(default_factory=dict)  # stage, lr, steps, data, history (training/llm.py)

    def __post_init__(self):
        if self.projector not in PROJECTOR_TYPES:
            raise ConfigError(f"projector={self.projector!r}: choose one of {', '.join(PROJECTOR_TYPES)}")
        if self.fmri_hidden < 1 or self.n_fmri_tokens < 1:
            raise ConfigError(f"fmri_hidden={self.fmri_hidden} and n_fmri_tokens={self.n_fmri_tokens} must be positive")


def preset_brainllm_dir(preset, stage: int = 2) -> Path:
    """Where a preset keeps its BrainLLM after `stage` (2: what the explorer loads); the layout's
    `brainllm_dir` (neurochat/models/bundle.py) names the folder."""
    return preset.layout.brainllm_dir("vit3d", stage)


def extractor_facts(folder: str | Path, config) -> dict:
    """How brainllm.json names the extractor checkpoint it was trained with: folder, weights digest, shape."""
    folder = Path(folder)
    weights = folder / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16] if weights.exists() else None
    return {"folder": str(folder.resolve()), "sha256_16": digest, "layout": config.layout,
            "patch_size": config.patch_size, "hidden": config.hidden, "layers": config.layers,
            "n_tokens": config.n_tokens}  # fmt: skip


class BrainLLM(nn.Module):
    """Projector f_t + causal LM. A plain `nn.Module` (not a `PreTrainedModel`: transformers would
    re-initialise the projector on load); the LM keeps its own folder format.

    Build one from an LM folder with `BrainLLM.from_language_model`, load a trained one with
    `load_brainllm`.
    """

    def __init__(self, lm: nn.Module, tokenizer, config: BrainLLMConfig, projector: nn.Module | None = None,
                 lm_source: str | Path | None = None):  # fmt: skip
        super().__init__()
        self.lm = lm
        self.tokenizer = tokenizer
        self.config = config
        self.lm_source = Path(lm_source) if lm_source else None  # the LM folder it was loaded from
        embedding_size = lm.get_input_embeddings().embedding_dim
        self.projector = projector or build_projector(config.projector, config.fmri_hidden, embedding_size)
        self.image_token_id = tokenizer.convert_tokens_to_ids(config.image_token)
        # generation stops at any of the LM's end tokens (Llama-3-Instruct: <|eot_id|> and <|end_of_text|>)
        stops = getattr(getattr(lm, "generation_config", None), "eos_token_id", None)
        stops = [stops] if isinstance(stops, int) else list(stops or [])
        if tokenizer.eos_token_id is not None:
            stops.append(tokenizer.eos_token_id)
        self.stop_token_ids = list(dict.fromkeys(stops))
        if not self.stop_token_ids:
            raise ConfigError("the language model has no end-of-sequence token: set eos_token in its tokenizer")
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.stop_token_ids[0]

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_language_model(cls, lm_dir: str | Path, fmri_hidden: int, n_fmri_tokens: int, *, dtype=None,
                            device: str | torch.device = "cpu", extractor: dict | None = None,
                            max_context: int | None = None, seed: int = 0, quantization: str | None = None,
                            offload: bool = False) -> "BrainLLM":  # fmt: skip
        """A new BrainLLM (randomly initialised f_t, float32) over the causal LM in `lm_dir` (loaded in
        `dtype`, or quantized: `load_language_model`)."""
        lm, tokenizer = load_language_model(lm_dir, dtype=dtype, device=device, quantization=quantization, offload=offload)
        config = BrainLLMConfig(fmri_hidden=fmri_hidden, n_fmri_tokens=n_fmri_tokens, max_context=max_context,
                                extractor=dict(extractor or {}))  # fmt: skip
        torch.manual_seed(seed)
        projector = build_projector(config.projector, fmri_hidden, lm.get_input_embeddings().embedding_dim)
        projector.to(device)
        return cls(lm, tokenizer, config, projector, lm_source=lm_dir)

    @property
    def device(self) -> torch.device:
        return self.lm.get_input_embeddings().weight.device

    @property
    def max_context(self) -> int:
        limit = getattr(self.lm.config, "max_position_embeddings", None) or FALLBACK_CONTEXT
        return min(limit, self.config.max_context or limit)

    @property
    def has_adapter(self) -> bool:
        return hasattr(self.lm, "peft_config")

    def add_lora(self, r: int = 16, alpha: int = 32, dropout: float = 0.05, target_modules: Sequence[str] | None = None):
        """Wrap the LM in LoRA adapters (peft): stage 2's cheaper option. Only adapters train."""
        from peft import LoraConfig, get_peft_model

        targets = list(target_modules or ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))
        lora = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")
        self.lm = get_peft_model(self.lm, lora)
        return self

    def enable_gradient_checkpointing(self) -> "BrainLLM":
        """Recompute each LM layer's activations in the backward pass instead of keeping them: stage 2 of an
        8B LLM then holds one layer's activations at a time (a third slower per step)."""
        lm = self.lm.get_base_model() if self.has_adapter else self.lm
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        lm.config.use_cache = False  # a cache is useless while training and clashes with recomputation
        return self

    def merge_lora(self) -> "BrainLLM":
        """Fold LoRA adapters into the LM weights (faster inference; saves as a full LM)."""
        if self.has_adapter:
            self.lm = self.lm.merge_and_unload()
        return self

    # -- training ------------------------------------------------------------------------------

    def encode(self, messages: Sequence[dict], *, add_generation_prompt: bool = False) -> EncodedConversation:
        return encode_conversation(self.tokenizer, messages, self.config.n_fmri_tokens, self.config.image_token,
                                   add_generation_prompt=add_generation_prompt)  # fmt: skip

    def project(self, fmri: torch.Tensor) -> torch.Tensor:
        """t = f_t(h): (B, T, D) → (B, T, E)."""
        fmri = self.check_fmri(fmri)
        return self.projector(fmri.to(self.device, next(self.projector.parameters()).dtype))

    def embed(self, input_ids: torch.Tensor, fmri: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, L, E) with the projected fMRI at the placeholder positions."""
        inputs_embeds = self.lm.get_input_embeddings()(input_ids)
        # f_t may be float32 (its master weights) over a bf16 LM: the spliced sequence takes the LM's precision
        return splice_fmri(inputs_embeds, input_ids, self.project(fmri).to(inputs_embeds.dtype), self.image_token_id)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, fmri: torch.Tensor,
                labels: torch.Tensor | None = None):  # fmt: skip
        """The LM's output on the spliced sequence; with `labels`, only `.loss`: Eq. 3's negative
        log-likelihood of the answers (mean over answer tokens, as the LM's own loss computes it)."""
        from transformers.modeling_outputs import CausalLMOutput

        inputs_embeds = self.embed(input_ids, fmri)
        if labels is None:
            return self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        # Eq. 3 needs logits only where an answer token is predicted, not at the fMRI and prompt
        # positions; the LM head (a quarter of the demo LM's work per token) runs on those rows alone.
        hidden = self.lm.get_decoder()(inputs_embeds=inputs_embeds, attention_mask=attention_mask,
                                       use_cache=False).last_hidden_state  # fmt: skip
        targets = labels[:, 1:]  # position i predicts token i + 1
        answer = targets != IGNORE_INDEX
        logits = self.lm.get_output_embeddings()(hidden[:, :-1][answer]).float()
        return CausalLMOutput(loss=nn.functional.cross_entropy(logits, targets[answer]))

    def check_fmri(self, fmri) -> torch.Tensor:
        """fMRI hidden states (T, D) or (B, T, D) as a (B, T, D) tensor, or a DataError naming the
        expected and the actual shapes."""
        t, d = self.config.n_fmri_tokens, self.config.fmri_hidden
        fmri = torch.as_tensor(fmri)
        if fmri.ndim not in (2, 3) or tuple(fmri.shape[-2:]) != (t, d) or not fmri.is_floating_point():
            source = self.config.extractor.get("folder", "the extractor it was trained with")
            raise DataError(
                f"fMRI hidden states of shape {tuple(fmri.shape)} ({fmri.dtype}); this BrainLLM reads ({t}, {d}) "
                f"per recording (or a batch (B, {t}, {d})): the {t} CLS + patch tokens of the penultimate layer of "
                f"{source}, hidden size {d}. Were they made by another extractor?"
            )
        return fmri if fmri.ndim == 3 else fmri[None]

    # -- generation ----------------------------------------------------------------------------

    def prepare(self, fmri, messages, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
        """Check the inputs and build the left-padded, spliced prompt batch.

        Returns (inputs_embeds (B, L, E), attention_mask (B, L), notes per conversation, prompt lengths).
        """
        # 1. Check inputs: fMRI (T, D) or (B, T, D); one conversation (a string, or messages) or B of them
        fmri = self.check_fmri(fmri)  # (B, T, D)
        conversations = as_conversations(messages, len(fmri))
        if not 1 <= max_new_tokens < self.max_context - self.config.n_fmri_tokens:
            raise DataError(f"max_new_tokens={max_new_tokens}: choose 1 to {self.max_context - self.config.n_fmri_tokens - 1}"
                            f" (the context holds {self.max_context} tokens, {self.config.n_fmri_tokens} of them fMRI)")
        budget = self.max_context - max_new_tokens
        # 2. Encode each conversation, dropping its oldest exchanges if it is too long
        encoded, notes = zip(*(self._fit(with_placeholder(c, self.config.image_token), budget, max_new_tokens)
                               for c in conversations))  # fmt: skip
        # 3. Left-pad (generation continues at the right end) and splice
        length = max(len(e.input_ids) for e in encoded)
        input_ids = torch.full((len(encoded), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(encoded), length), dtype=torch.long)
        for row, e in enumerate(encoded):
            input_ids[row, length - len(e.input_ids) :] = torch.tensor(e.input_ids)
            attention_mask[row, length - len(e.input_ids) :] = 1
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        with torch.no_grad():
            inputs_embeds = self.embed(input_ids, fmri)
        return inputs_embeds, attention_mask, list(notes), [len(e.input_ids) for e in encoded]

    def _fit(self, messages: list[dict], budget: int, max_new_tokens: int) -> tuple[EncodedConversation, list[str]]:
        """Encode; if longer than `budget`, drop the oldest exchanges after the fMRI turn and say so."""
        encoded = self.encode(messages, add_generation_prompt=True)
        start = 1 if messages[0]["role"] == "system" else 0
        # head: [system,] the fMRI turn and its answer; middle: later exchanges; last: the new message
        head, middle, last = messages[: start + 2], messages[start + 2 : -1], messages[-1:]
        dropped = 0
        while len(encoded.input_ids) > budget and middle:
            middle = middle[2:]  # the oldest remaining question and its answer
            dropped += 1
            encoded = self.encode(head + middle + last, add_generation_prompt=True)
        if len(encoded.input_ids) > budget:
            raise DataError(
                f"the message is too long: with the {self.config.n_fmri_tokens} fMRI tokens and the chat markup the prompt "
                f"takes {len(encoded.input_ids)} tokens, and this model reads {self.max_context} tokens, {max_new_tokens} "
                f"of which are kept for the answer. Shorten the message (by about {len(encoded.input_ids) - budget} "
                "tokens) or start a new conversation."
            )
        notes = []
        if dropped:
            notes.append(f"the conversation was longer than the model's context of {self.max_context} tokens: the "
                         f"{dropped} oldest exchange(s) after the first (fMRI) turn were left out of the prompt")  # fmt: skip
        return encoded, notes

    def _generate_kwargs(self, max_new_tokens: int, do_sample: bool, temperature: float, top_p: float,
                         distinct_concepts: Sequence[str] | None = None, excluded_concepts: Sequence[str] = ()) -> dict:  # fmt: skip
        kwargs = {"max_new_tokens": max_new_tokens, "do_sample": do_sample, "eos_token_id": self.stop_token_ids,
                  "pad_token_id": self.pad_token_id, "suppress_tokens": [self.image_token_id]}  # fmt: skip
        if distinct_concepts or excluded_concepts:
            from transformers import LogitsProcessorList

            processor = NamesEachConceptOnce(self.tokenizer, distinct_concepts or (), excluded=excluded_concepts)
            kwargs["logits_processor"] = LogitsProcessorList([processor])
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        else:  # greedy: clear sampling defaults a generation_config may carry (Llama-3's has some)
            kwargs.update(temperature=None, top_p=None, top_k=None)
        return kwargs

    @torch.no_grad()
    def generate(self, fmri, messages, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, *, do_sample: bool = False,
                 temperature: float = 0.7, top_p: float = 0.9, seed: int | None = None, streamer=None,
                 distinct_concepts: Sequence[str] | None = None, excluded_concepts: Sequence[str] = ()):  # fmt: skip
        """Answer the last user message of `messages` about the recording `fmri`.

        Parameters
        ----------
        fmri : (T, D) or (B, T, D)
            The extractor's penultimate hidden states (`ExtractorOutput.penultimate`).
        messages : str, list of {"role", "content"}, or a list of B such lists
            The conversation so far, ending with a user message; a string is one user message. The
            fMRI placeholder is put at the start of the first user message unless it is there. One
            conversation with a batch of B recordings asks each recording the same thing.
        max_new_tokens : int
        do_sample : bool
            False: greedy (deterministic). True: temperature / nucleus sampling, seeded by `seed`.
        streamer : transformers streamer, optional
            Receives tokens as they are generated (batch of one only); see also `stream`.
        distinct_concepts : list of str, optional
            Concept names the answer may name once each (`NamesEachConceptOnce`): for answers that
            list the picture's objects, such as the reconstruction prompt.
        excluded_concepts : list of str, optional
            Concept names the answer may not name at all (those removed by an ablation).

        Returns
        -------
        Reply for a (T, D) input, a list of B Replies for (B, T, D).
        """
        single = torch.as_tensor(fmri).ndim == 2
        if streamer is not None and not single:
            raise DataError("a streamer follows one recording: give fMRI hidden states of shape (T, D), or no streamer")
        inputs_embeds, attention_mask, notes, prompt_lengths = self.prepare(fmri, messages, max_new_tokens)
        if seed is not None:
            torch.manual_seed(seed)
        kwargs = self._generate_kwargs(max_new_tokens, do_sample, temperature, top_p, distinct_concepts, excluded_concepts)
        output = self.lm.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, streamer=streamer, **kwargs)
        replies = []
        for row, ids in enumerate(output.tolist()):  # only the new tokens (generation from inputs_embeds)
            ids = until_stop(ids, self.stop_token_ids)
            text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
            replies.append(Reply(text, ids, notes[row], prompt_lengths[row]))
        return replies[0] if single else replies

    def stream(self, fmri, messages, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, *, do_sample: bool = False,
               temperature: float = 0.7, top_p: float = 0.9, seed: int | None = None, timeout: float | None = 300.0,
               distinct_concepts: Sequence[str] | None = None) -> ChatStream:  # fmt: skip
        """Like `generate` for one recording (T, D), but returns a `ChatStream` of text pieces."""
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return torch.full((input_ids.shape[0],), cancelled.is_set(), dtype=torch.bool, device=input_ids.device)

        if torch.as_tensor(fmri).ndim != 2:
            raise DataError(f"stream() answers one recording: give fMRI hidden states of shape (T, D), not "
                            f"{tuple(torch.as_tensor(fmri).shape)}")  # fmt: skip
        inputs_embeds, attention_mask, notes, _ = self.prepare(fmri, messages, max_new_tokens)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=timeout)
        kwargs = self._generate_kwargs(max_new_tokens, do_sample, temperature, top_p, distinct_concepts)
        cancelled = threading.Event()
        kwargs["stopping_criteria"] = StoppingCriteriaList([Cancelled()])

        def run():
            if seed is not None:
                torch.manual_seed(seed)
            with torch.no_grad():
                self.lm.generate(inputs_embeds=inputs_embeds, attention_mask=attention_mask, streamer=streamer, **kwargs)

        return ChatStream(run, streamer, notes[0], cancelled)

    # -- saving --------------------------------------------------------------------------------

    def save(self, folder: str | Path, *, language_model: str = "copy", training: dict | None = None) -> Path:
        """Write the BrainLLM folder.

        language_model : "copy" writes the LM and tokenizer to FOLDER/llm (LoRA adapters, if any, are
            merged into this model first, in place). "reference" writes no LM weights: brainllm.json names the folder it was loaded
            from, and LoRA adapters (if any) go to FOLDER/lora. Use "reference" only when the LM's own
            weights did not change (stage 1, LoRA): it saves copying a 16 GB Llama-3-8B.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if language_model not in ("copy", "reference"):
            raise ConfigError(f"language_model={language_model!r}: choose 'copy' or 'reference'")
        adapter = None
        if language_model == "reference":
            if self.lm_source is None:
                raise ConfigError("this BrainLLM does not know the folder its LM came from: save it with language_model='copy'")
            lm_path, lm_absolute = _relative(self.lm_source, folder), str(self.lm_source.resolve())
            if self.has_adapter:
                # peft: the adapters only. The embedding table grew by the placeholder row, which
                # `add_image_token` rebuilds identically on load, so it is not saved again.
                self.lm.save_pretrained(folder / ADAPTER_DIR, save_embedding_layers=False)
                adapter = ADAPTER_DIR
        else:
            lm = self.lm.merge_and_unload() if self.has_adapter else self.lm
            lm.save_pretrained(folder / LLM_DIR)
            self.tokenizer.save_pretrained(folder / LLM_DIR)
            lm_path, lm_absolute = LLM_DIR, None
            if lm is not self.lm:
                self.lm = lm  # merging is in place; keep the merged model
        extractor = dict(self.config.extractor)
        if extractor.get("folder"):  # relative too, so a committed pair of folders moves with the repository
            extractor["folder_relative"] = _relative(extractor["folder"], folder)
        config = BrainLLMConfig(**{**asdict(self.config), "language_model": lm_path,
                                   "language_model_absolute": lm_absolute, "adapter": adapter, "extractor": extractor,
                                   "training": dict(training if training is not None else self.config.training)})  # fmt: skip
        state = {k: v.detach().cpu().contiguous() for k, v in self.projector.state_dict().items()}
        save_file(state, folder / PROJECTOR_NAME, metadata={"format": FORMAT})
        (folder / CONFIG_NAME).write_text(json.dumps({"format": FORMAT, **asdict(config)}, indent=2) + "\n")
        self.config = config
        return folder


def _relative(path: str | Path, start: Path) -> str:
    return Path(os.path.relpath(Path(path).resolve(), start.resolve())).as_posix()


def trained_extractor_dir(folder: str | Path) -> Path | None:
    """The extractor checkpoint a saved BrainLLM was trained with (its fMRI tokens must come from
    it): the path relative to the BrainLLM folder if it exists there, else the absolute one."""
    folder = Path(folder)
    extractor = json.loads((folder / CONFIG_NAME).read_text()).get("extractor", {})
    candidates = [folder / extractor["folder_relative"]] if extractor.get("folder_relative") else []
    candidates += [Path(extractor["folder"])] if extractor.get("folder") else []
    return next((c for c in candidates if (c / "model.safetensors").exists()), candidates[0] if candidates else None)


def load_brainllm(folder: str | Path, *, dtype=None, device: str | torch.device = "cpu", merge_lora: bool = False,
                  language_model: str | Path | None = None, quantization: str | None = None,
                  offload: bool = False) -> BrainLLM:  # fmt: skip
    """Load a BrainLLM folder written by `BrainLLM.save` (no flags needed).

    language_model : override where the base LM lives (if the folder named in brainllm.json moved).
    merge_lora : fold LoRA adapters into the LM after loading.
    dtype, quantization, offload : how the LM is loaded (`load_language_model`); f_t stays float32 on `device`.
    """
    folder = Path(folder)
    for name in (CONFIG_NAME, PROJECTOR_NAME):
        if not (folder / name).exists():
            raise ConfigError(f"missing {folder / name}: a BrainLLM folder holds {CONFIG_NAME} and {PROJECTOR_NAME} "
                              "(written by `python -m train.llm --stage 1|2`)")  # fmt: skip
    saved = json.loads((folder / CONFIG_NAME).read_text())
    if saved.pop("format", None) != FORMAT:
        raise ConfigError(f"{folder / CONFIG_NAME} is not a {FORMAT} file")
    config = BrainLLMConfig(**saved)
    # 1. The LM: its own folder, or the base folder the config names
    if language_model is not None:
        lm_dir = Path(language_model)
    else:
        lm_dir = folder / config.language_model
        if not (lm_dir / "config.json").exists() and config.language_model_absolute:
            lm_dir = Path(config.language_model_absolute)
    lm, tokenizer = load_language_model(lm_dir, dtype=dtype, device=device, quantization=quantization, offload=offload)
    # 2. LoRA adapters
    if config.adapter:
        from peft import PeftModel

        lm = PeftModel.from_pretrained(lm, folder / config.adapter, is_trainable=False)
        if merge_lora:
            lm = lm.merge_and_unload()
    # 3. The projector
    projector = build_projector(config.projector, config.fmri_hidden, lm.get_input_embeddings().embedding_dim)
    projector.load_state_dict(load_file(folder / PROJECTOR_NAME))
    model = BrainLLM(lm, tokenizer, config, projector.to(device), lm_source=lm_dir)
    return model.eval()
