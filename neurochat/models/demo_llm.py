"""The demo preset's language model: a byte-level BPE tokenizer and a small Llama, built offline.

The paper starts from a pretrained Llama-3-8B-Instruct (App. C). The demo has no pretrained LLM, so
it trains its own on the text of the SimNSD language extension (App. A.2): a tokenizer here, then
"stage 0" (plain causal-LM pretraining, `neurochat.training.llm`) so that stages 1 and 2 start
from a model that already speaks the extension's language.

Both are saved in the standard folders (`save_pretrained`) and load with the code path the paper's
model uses: `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained(dir, local_files_only=True)`.
The chat format copies Llama-3-Instruct's (its header and end-of-turn tokens, its template), so the
demo exercises exactly what the paper preset will see.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from neurochat.errors import ConfigError
from neurochat.language import (
    BRIEF_INSTRUCTIONS,
    DETAILED_INSTRUCTIONS,
    IMAGE_TOKEN,
    LOCALIZATION_TEMPLATE,
    RECONSTRUCTION_INSTRUCTIONS,
)

# Llama-3's control tokens (same names, so the same template and stop rules serve both presets).
BOS_TOKEN = "<|begin_of_text|>"
END_OF_TEXT_TOKEN = "<|end_of_text|>"
PAD_TOKEN = "<|pad|>"
HEADER_START_TOKEN = "<|start_header_id|>"
HEADER_END_TOKEN = "<|end_header_id|>"
EOT_TOKEN = "<|eot_id|>"  # ends every turn; generation stops here
CONTROL_TOKENS = (BOS_TOKEN, END_OF_TEXT_TOKEN, PAD_TOKEN, HEADER_START_TOKEN, HEADER_END_TOKEN, EOT_TOKEN)

# Meta-Llama-3-8B-Instruct's chat template. The paper's dialogue is "<human>: [image] [instruction]
# <bot>: [answer]" (Sec. 3.4); this is the same turn structure in Llama-3's own markup.
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# Llama-3's pre-tokenizer split: newlines form their own pieces ("\s*[\r\n]+"), so "\n\n" before an
# answer never merges with the answer's first word and a rendered prompt is a token prefix of the
# prompt plus its answer.
LLAMA3_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class DemoLLMConfig:
    """Sizes of the demo's tokenizer and Llama, small enough to train on a CPU (`train/llm.py` says how to time it)."""

    vocab_size: int = 4096  # BPE merges over a templated, ~2k-word language; plus the 256 bytes
    hidden: int = 256  # the LLM embedding size that the projector f_t maps into (Sec. 3.3)
    layers: int = 4
    heads: int = 4
    intermediate: int = 688  # SwiGLU width ≈ 8/3 · hidden, as in Llama
    context: int = 512  # 1 + N fMRI tokens (≈ 50–120 in the demo) plus a multi-turn dialogue
    tie_embeddings: bool = True  # a small model: the input table doubles as the output layer
    rope_theta: float = 10_000.0

    def __post_init__(self):
        if self.hidden % self.heads:
            raise ConfigError(f"hidden={self.hidden} must be divisible by heads={self.heads}")


def extension_texts(samples: Iterable[dict]) -> list[str]:
    """Every instruction and answer of language-extension samples, without the fMRI placeholder,
    plus the paper's instruction lists (Tables 3–6), so every instruction is in the vocabulary."""
    texts = [*BRIEF_INSTRUCTIONS, *DETAILED_INSTRUCTIONS, *RECONSTRUCTION_INSTRUCTIONS, LOCALIZATION_TEMPLATE]
    for sample in samples:
        for turn in sample["conversations"]:
            texts.append(turn["value"].replace(IMAGE_TOKEN, "").strip())
    return texts


def train_tokenizer(texts: Sequence[str], vocab_size: int = DemoLLMConfig.vocab_size, *,
                    image_token: str | None = IMAGE_TOKEN, context: int = DemoLLMConfig.context):  # fmt: skip
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a `PreTrainedTokenizerFast` with
    Llama-3's control tokens and chat template. `image_token=None` leaves the fMRI placeholder out
    (as in any off-the-shelf LLM's tokenizer; `BrainLLM` then adds it)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if not texts:
        raise ConfigError("no text to train the tokenizer on: the language extension is empty")
    texts = [*texts, "system", "user", "assistant", "\n\n"]  # the chat template's own words: one token each
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tokenizer.decoder = decoders.ByteLevel()
    special = [*CONTROL_TOKENS, *([image_token] if image_token else [])]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodes: no unknown tokens
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOT_TOKEN,  # as Llama-3-Instruct: a reply ends with <|eot_id|>
        pad_token=PAD_TOKEN,
        additional_special_tokens=[HEADER_START_TOKEN, HEADER_END_TOKEN, END_OF_TEXT_TOKEN, *special[len(CONTROL_TOKENS):]],
        model_max_length=context,
        clean_up_tokenization_spaces=False,
    )
    wrapped.chat_template = LLAMA3_CHAT_TEMPLATE
    return wrapped


def build_llm(tokenizer, config: DemoLLMConfig = DemoLLMConfig(), seed: int = 0):
    """A randomly initialised `LlamaForCausalLM` for `tokenizer` (stage 0 then pretrains it)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    stop_ids = [tokenizer.convert_tokens_to_ids(t) for t in (EOT_TOKEN, END_OF_TEXT_TOKEN)]
    llama_config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden,
        intermediate_size=config.intermediate,
        num_hidden_layers=config.layers,
        num_attention_heads=config.heads,
        num_key_value_heads=config.heads,
        max_position_embeddings=config.context,
        rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        tie_word_embeddings=config.tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_ids,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config)
    # Llama-3-Instruct stops at either <|eot_id|> or <|end_of_text|>; so does the demo
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id, eos_token_id=stop_ids,
                                               pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    return model
