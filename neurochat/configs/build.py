"""Random-weight models of the paper preset, written in the published folder layouts.

    write_paper_weights(ROOT, scale="tiny")     # for tests: the real classes and files, sizes shrunk
    write_paper_weights(ROOT, scale="paper")    # for the GPU check: the published sizes, random weights

Each component starts from its published configuration (`neurochat/configs/paper/`, the same file names
and keys as the hub repositories); "tiny" only overrides sizes (`TINY`): widths, depths, heads and
vocabularies. Everything that decides how a folder is loaded and used stays as published: the
pipeline's model_index.json, the schedulers, the UNet's `sample_size` of 96 (a 768 px decoder), the
VAE's `sample_size` of 768, CLIP's 224 px preprocessing, the slow CLIP tokenizer files of the unCLIP
folder (vocab.json and merges.txt, no tokenizer.json), Llama-3's special tokens, chat template, sharded
weights and missing pad token. unCLIP's image encoder is CLIP-L's vision tower, as in the release.

Nothing here is trained: the folders exercise loading, shapes, memory and speed, not quality.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import torch

from neurochat.configs import PAPER_CONFIGS, llama3_special_tokens, paper_component, paper_fact

SCALES = ("tiny", "paper")

# Size overrides of the "tiny" scale, per configuration file; vocabulary sizes follow the tokenizers built here.
TINY = {
    "clip": {"projection_dim": 32,
             "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
                             "projection_dim": 32},
             "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2,
                               "num_hidden_layers": 2, "projection_dim": 32}},
    "unet": {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "attention_head_dim": [1, 1, 2, 2],
             "cross_attention_dim": 32, "projection_class_embeddings_input_dim": 64},
    "vae": {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 8},
    "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
                     "projection_dim": 16},
    "image_normalizer": {"embedding_dim": 32},
    "llm": {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4, "num_key_value_heads": 2,
            "num_hidden_layers": 2},
}  # fmt: skip
TINY_LLM_VOCABULARY = 512  # byte-level BPE tokens before Llama-3's 256 special ones (published: 128,000)
LLM_SHARDS = 4  # Meta-Llama-3-8B-Instruct ships its weights in 4 safetensors shards with an index

# Text the tiny tokenizers learn their merges from: any English does, these are the app's own words.
_CORPUS = ("a photo of a cat on a sofa next to a dog", "two people ride bicycles along the beach at sunset",
           "describe the image concisely", "provide the corresponding stable diffusion prompts for the image",
           'locating the concept of "person"', "a kitchen with a table, chairs and a clock on the wall")  # fmt: skip


def _merged(config: dict, overrides: dict) -> dict:
    out = copy.deepcopy(config)
    for key, value in overrides.items():
        out[key] = _merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _sizes(config: dict, part: str, scale: str, **extra) -> dict:
    return _merged(config, {**TINY[part], **extra}) if scale == "tiny" else _merged(config, extra)


def _copy_facts(component: str, folder: Path, names: list[str]) -> None:
    for name in names:
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(paper_component(component) / name, target)


# -- CLIP's byte-level BPE files (vocab.json, merges.txt), numbered as OpenAI's vocabulary is ------------


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 and CLIP's reversible map from bytes to printable characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars)}


def write_clip_bpe(folder: Path, vocab_size: int | None) -> int:
    """vocab.json and merges.txt of a CLIP tokenizer: bytes, word-final bytes, merges of `_CORPUS`'s words,
    (unreachable fillers up to `vocab_size`), then <|startoftext|> and <|endoftext|> last. Returns the size."""
    base = list(_bytes_to_unicode().values())
    symbols, merges = base + [c + "</w>" for c in base], []
    for word in sorted({w for text in _CORPUS for w in text.replace('"', " ").replace(",", " ").split()}):
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        while len(pieces) > 1:  # merge left to right: one merge per new prefix
            merge = (pieces[0], pieces[1])
            if merge not in merges:
                merges.append(merge)
                symbols.append("".join(merge))
            pieces = ["".join(merge)] + pieces[2:]
    symbols = list(dict.fromkeys(symbols))
    if vocab_size is not None:
        symbols += [f"<|filler_{i}|>" for i in range(vocab_size - 2 - len(symbols))]
    vocab = {symbol: index for index, symbol in enumerate(symbols + ["<|startoftext|>", "<|endoftext|>"])}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    return len(vocab)


# -- the three folders ------------------------------------------------------------------------------------


def write_clip(folder: Path, scale: str = "tiny", seed: int = 0, device: str | torch.device = "cpu"):
    """openai/clip-vit-large-patch14: CLIPModel weights, preprocessing, tokenizer files. Returns the model
    (on `device`, where it was initialised: a GPU initialises the full size in a moment)."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    facts = paper_fact(*_parts("clip", "config.json"))
    vocab_size = write_clip_bpe(folder, None if scale == "tiny" else facts["text_config"]["vocab_size"])
    config = _sizes(facts, "clip", scale, text_config={"vocab_size": vocab_size})
    torch.manual_seed(seed)
    with torch.device(device):
        model = CLIPModel(CLIPConfig.from_dict(config)).eval()
    model.save_pretrained(folder)
    _copy_facts("clip", folder, ["preprocessor_config.json", "tokenizer_config.json", "special_tokens_map.json"])
    tokenizer = CLIPTokenizer.from_pretrained(folder, local_files_only=True)
    tokenizer.backend_tokenizer.save(str(folder / "tokenizer.json"))  # the hub folder has the fast file too
    return model


def write_unclip(folder: Path, clip_model, scale: str = "tiny", seed: int = 0, device: str | torch.device = "cpu") -> None:
    """stabilityai/stable-diffusion-2-1-unclip-small: every part the pipeline's model_index.json lists."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    facts = lambda *parts: paper_fact(*_parts("unclip", *parts))  # noqa: E731
    vocab_size = write_clip_bpe(folder / "tokenizer", None if scale == "tiny" else facts("text_encoder", "config.json")["vocab_size"])
    text_config = _sizes(facts("text_encoder", "config.json"), "text_encoder", scale, vocab_size=vocab_size)
    with torch.device(device):
        CLIPTextModel(CLIPTextConfig.from_dict(text_config)).save_pretrained(folder / "text_encoder")
        UNet2DConditionModel.from_config(_sizes(facts("unet", "config.json"), "unet", scale)).save_pretrained(folder / "unet")
        AutoencoderKL.from_config(_sizes(facts("vae", "config.json"), "vae", scale)).save_pretrained(folder / "vae")
        normalizer = StableUnCLIPImageNormalizer.from_config(_sizes(facts("image_normalizer", "config.json"), "image_normalizer", scale))
        normalizer.save_pretrained(folder / "image_normalizer")
        # the release's image encoder is CLIP ViT-L/14's vision tower and projection, the same weights
        vision_config = copy.deepcopy(clip_model.config.vision_config)
        vision_config.projection_dim = clip_model.config.projection_dim
        image_encoder = CLIPVisionModelWithProjection(vision_config)
    image_encoder.vision_model.load_state_dict(clip_model.vision_model.state_dict())
    image_encoder.visual_projection.load_state_dict(clip_model.visual_projection.state_dict())
    image_encoder.save_pretrained(folder / "image_encoder")
    _copy_facts("unclip", folder, ["model_index.json", "scheduler/scheduler_config.json",
                                   "image_noising_scheduler/scheduler_config.json",
                                   "feature_extractor/preprocessor_config.json", "tokenizer/tokenizer_config.json",
                                   "tokenizer/special_tokens_map.json"])  # fmt: skip


def write_llama3_tokenizer(folder: Path, regular_tokens: int | None = TINY_LLM_VOCABULARY):
    """A byte-level BPE tokenizer with Llama-3's pre-tokenizer, BOS post-processor, 256 special tokens
    after the regular ones (unreachable fillers pad the regular ones to `regular_tokens`), its
    tokenizer_config.json (chat template inside, no pad token) and special_tokens_map.json."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from neurochat.models.demo_llm import LLAMA3_SPLIT_PATTERN

    trainer = trainers.BpeTrainer(vocab_size=min(regular_tokens or TINY_LLM_VOCABULARY, TINY_LLM_VOCABULARY),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)  # fmt: skip
    split = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_SPLIT_PATTERN), behavior="isolated"),
                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])  # fmt: skip
    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = split
    learner.train_from_iterator([*_CORPUS, "system", "user", "assistant", "\n\n"], trainer=trainer)
    state = json.loads(learner.to_str())["model"]
    vocab = dict(state["vocab"])
    vocab.update({f"<|filler_{i}|>": len(vocab) + i for i in range((regular_tokens or len(vocab)) - len(vocab))})
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tokenizer.pre_tokenizer, tokenizer.decoder = split, decoders.ByteLevel()
    specials = llama3_special_tokens()
    tokenizer.add_special_tokens(specials)
    bos, bos_id = specials[0], len(vocab)
    tokenizer.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                             special_tokens=[(bos, bos_id)])  # fmt: skip
    PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)  # the published folder keeps it in tokenizer_config.json
    config = paper_fact(*_parts("llm", "tokenizer_config.json"))
    config["added_tokens_decoder"] = {str(bos_id + k): {"content": token, "lstrip": False, "normalized": False, "rstrip": False,
                                                        "single_word": False, "special": True}
                                      for k, token in enumerate(specials)}  # fmt: skip
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    _copy_facts("llm", folder, ["special_tokens_map.json"])
    return AutoTokenizer.from_pretrained(folder, local_files_only=True)


def write_llm(folder: Path, scale: str = "tiny", seed: int = 0, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.bfloat16):  # fmt: skip
    """meta-llama/Meta-Llama-3-8B-Instruct: sharded bf16 weights, config, generation config, tokenizer.
    Returns (model, tokenizer); the model stays on `device`."""
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = write_llama3_tokenizer(folder, TINY_LLM_VOCABULARY if scale == "tiny" else 128_000)
    first = len(tokenizer) - len(llama3_special_tokens())
    published = lambda token_id: first + token_id - 128_000  # noqa: E731 — an id of the published tokenizer, here
    facts = paper_fact(*_parts("llm", "config.json"))
    config = _sizes(facts, "llm", scale, vocab_size=len(tokenizer), bos_token_id=published(facts["bos_token_id"]),
                    eos_token_id=published(facts["eos_token_id"]))  # fmt: skip
    generation = paper_fact(*_parts("llm", "generation_config.json"))
    generation.update(bos_token_id=published(generation["bos_token_id"]),
                      eos_token_id=[published(i) for i in generation["eos_token_id"]])  # fmt: skip
    torch.manual_seed(seed)
    with torch.device(device):
        model = LlamaForCausalLM._from_config(LlamaConfig.from_dict(config), dtype=dtype).eval()
    model.generation_config = GenerationConfig.from_dict(generation)
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    model.save_pretrained(folder, max_shard_size=max(1, total // LLM_SHARDS + 1))
    return model, tokenizer


def write_paper_weights(root: str | Path, scale: str = "tiny", *, seed: int = 0, device: str | torch.device = "cpu",
                        llm: bool = True) -> Path:  # fmt: skip
    """The paper preset's third-party folders under `root`, laid out by hub id (`neurochat.presets`).
    `llm=False` leaves the LLM out (callers that write it themselves, to keep it in memory)."""
    from neurochat.presets import PAPER_HUB_IDS

    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: choose one of {SCALES}")
    root = Path(root)
    clip = write_clip(root / PAPER_HUB_IDS["clip"], scale, seed, device=device)
    write_unclip(root / PAPER_HUB_IDS["unclip"], clip, scale, seed, device=device)
    del clip
    if llm:
        write_llm(root / PAPER_HUB_IDS["llm"], scale, seed, device=device)
    return root


def _parts(component: str, *parts: str) -> tuple[str, ...]:
    return (*paper_component(component).relative_to(PAPER_CONFIGS).parts, *parts)
