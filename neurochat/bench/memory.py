"""GPU memory of the explorer's models: every component built from its real configuration on the meta device.

    python -m neurochat.bench memory --preset paper --json reports/benchmarks/memory_paper.json

Nothing is downloaded and no weights are read: the paper preset's components are built from the
published configurations in `neurochat/configs/paper/` (the demo's from its committed folders) with
accelerate's `init_empty_weights`, and their bytes are counted as the explorer holds them on a GPU
(`Explorer.load`): every model in bf16, one CLIP (the decoder's image encoder is not loaded: it is
CLIP ViT-L/14's vision tower), one VAE, f_t in float32. Besides the weights, the LLM's KV cache for a
full context (`--context`, default its max_position_embeddings) is counted; what is left of the
card holds the activations and the CUDA context (`python -m neurochat.bench gpu_check` measures the
real peak).

The LLM quantized, as bitsandbytes stores it: every nn.Linear of the decoder layers (not the output
layer, which transformers keeps in bf16, nor the embeddings)
    4-bit NF4:  0.5 byte per weight + one float32 absmax per block of 64 weights (0.0625 byte per weight)
    8-bit:      1 byte per weight + one float32 scale per output row
and its other parameters in bf16.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from neurochat.cli import add_nsd_root_option, add_preset_option, write_json

GIB = 2**30
TARGETS_GIB = {"bf16": 22.0, "4bit": 12.0}  # one 24 GB card: what is left holds activations and the CUDA context
NF4_BLOCK = 64  # weights per absmax in bitsandbytes' 4-bit (bnb_4bit_use_double_quant=False)
ABSMAX_BYTES = 4  # float32


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_option(parser, default="paper")  # configurations only: no --weights
    add_nsd_root_option(parser)  # the paper extractors' token counts from NSD's masks (default: a stand-in mask)
    parser.add_argument("--context", type=int, help="LLM tokens whose KV cache to count (default: its max_position_embeddings)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def module_bytes(module, *, bits: int | None = None, skip: tuple[str, ...] = ("lm_head",)) -> int:
    """Bytes of `module`'s parameters and buffers in bf16 (integer buffers at their own size, float32
    where the module is float32 by design); with `bits` 4 or 8, its nn.Linear weights (but `skip`)
    as bitsandbytes stores them."""
    import torch

    total, quantized = 0, set()
    if bits is not None:
        for name, child in module.named_modules():
            if isinstance(child, torch.nn.Linear) and not any(name.startswith(s) for s in skip):
                weight = child.weight
                if bits == 4:
                    total += math.ceil(weight.numel() / 2) + math.ceil(weight.numel() / NF4_BLOCK) * ABSMAX_BYTES
                else:
                    total += weight.numel() + weight.shape[0] * ABSMAX_BYTES
                quantized.add(id(weight))
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) in quantized:
            continue
        size = 2 if tensor.is_floating_point() else tensor.element_size()
        total += tensor.numel() * size
    return total


def _clip(folder: Path, empty):
    from transformers import CLIPConfig, CLIPModel

    with empty():
        return CLIPModel(CLIPConfig.from_dict(json.loads((folder / "config.json").read_text())))


def _unclip_parts(folder: Path, empty) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    read = lambda part: json.loads((folder / part / "config.json").read_text())  # noqa: E731
    with empty():
        return {"unclip.unet": UNet2DConditionModel.from_config(read("unet")),
                "unclip.text_encoder": CLIPTextModel(CLIPTextConfig.from_dict(read("text_encoder"))),
                "unclip.vae": AutoencoderKL.from_config(read("vae"))}  # fmt: skip


def _llm(folder: Path, empty):
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    config.vocab_size += 1  # the fMRI placeholder row that `add_image_token` adds
    with empty():
        return AutoModelForCausalLM.from_config(config), config


def _extractors(preset, nsd_root: str | None, empty, latent_shape, clip_dim) -> dict:
    """The localization ensemble, one per patch size, as the preset trains them."""
    import numpy as np

    from neurochat.models.extractor import ExtractorConfig, FMRIExtractor

    models = {}
    if preset.name == "paper":
        from neurochat.bench.preprocess import synthetic_union_mask
        from neurochat.configs import VIT3D_FACTS, paper_fact
        from neurochat.preprocess import PatchPreprocessor, PreprocessConfig

        facts = paper_fact(*VIT3D_FACTS)
        grid = tuple(facts["common_grid"])
        mask = None if nsd_root else synthetic_union_mask(grid)
        for r in facts["patch_sizes"]:
            if nsd_root:
                from neurochat.data import build_preprocessor
                from neurochat.nsd import NSDDataset

                n_tokens = build_preprocessor(NSDDataset(nsd_root), r).n_patches
            else:
                n_tokens = PatchPreprocessor(PreprocessConfig(grid, r), mask).n_patches
            config = ExtractorConfig(layout="vit3d", patch_size=r, n_tokens=n_tokens, hidden=facts["hidden"],
                                     layers=facts["layers"], heads=facts["heads"], mlp_ratio=facts["mlp_ratio"],
                                     head_hidden=facts["head_hidden"], clip_dim=clip_dim, latent_shape=latent_shape,
                                     alpha=facts["alpha"])  # fmt: skip
            with empty():
                models[f"extractor r={r}"] = FMRIExtractor(config, np.zeros((n_tokens, 3)))
    else:
        for r in preset.patch_sizes:
            saved = json.loads((preset.layout.extractor_dir("vit3d", r) / "config.json").read_text())["extractor"]
            config = ExtractorConfig(**saved)
            with empty():
                models[f"extractor r={r}"] = FMRIExtractor(config, np.zeros((config.n_tokens, 3)))
    return models


def measure(preset_name: str, nsd_root: str | None = None, context: int | None = None) -> dict:
    """{"components": {name: GiB}, "total_gib_bf16", "total_gib_8bit", "total_gib_4bit", ...} of a preset."""
    from accelerate import init_empty_weights

    from neurochat.configs import paper_component
    from neurochat.models.brainllm import build_projector
    from neurochat.models.unclip import native_image_size
    from neurochat.presets import get_preset

    if preset_name == "paper":
        preset = get_preset("paper", weights=Path("/nonexistent"))  # only its names and sizes are read
        folders = {part: paper_component(part) for part in ("clip", "unclip", "llm")}
    else:
        preset = get_preset("demo")
        llm_dir = preset.llm_dir if (preset.llm_dir / "config.json").exists() else preset.layout.brainllm_dir() / "llm"
        folders = {"clip": preset.clip_dir, "unclip": preset.unclip_dir, "llm": llm_dir}  # the demo LM lives in its BrainLLM
    clip = _clip(folders["clip"], init_empty_weights)
    unclip = _unclip_parts(folders["unclip"], init_empty_weights)
    lm, lm_config = _llm(folders["llm"], init_empty_weights)
    vae_config = unclip["unclip.vae"].config
    downsample = 2 ** (len(vae_config.block_out_channels) - 1)
    size = (preset.image_size or native_image_size(folders["unclip"])) // downsample
    latent_shape = (vae_config.latent_channels, size, size)
    extractors = _extractors(preset, nsd_root, init_empty_weights, latent_shape, clip.config.projection_dim)
    with init_empty_weights():
        projector = build_projector("mlp2x_gelu", next(iter(extractors.values())).config.hidden, lm_config.hidden_size)

    context = context or lm_config.max_position_embeddings
    head_dim = getattr(lm_config, "head_dim", None) or lm_config.hidden_size // lm_config.num_attention_heads
    kv_cache = 2 * lm_config.num_hidden_layers * lm_config.num_key_value_heads * head_dim * context * 2  # k and v, bf16
    shared = {"clip (image + text; also the decoder's image encoder)": module_bytes(clip)}
    shared.update({name: module_bytes(module) for name, module in unclip.items()})
    shared.update({name: module_bytes(model) for name, model in extractors.items()})
    shared["projector f_t (float32)"] = 2 * module_bytes(projector)
    shared[f"llm kv cache ({context} tokens)"] = kv_cache
    llm = {"bf16": module_bytes(lm), "8bit": module_bytes(lm, bits=8), "4bit": module_bytes(lm, bits=4)}
    components = {name: round(value / GIB, 3) for name, value in shared.items()}
    components["llm (bf16)"] = round(llm["bf16"] / GIB, 3)
    totals = {kind: round((sum(shared.values()) + value) / GIB, 2) for kind, value in llm.items()}
    return {"preset": preset_name, "components": components,
            "llm_gib": {kind: round(value / GIB, 3) for kind, value in llm.items()},
            "total_gib_bf16": totals["bf16"], "total_gib_8bit": totals["8bit"], "total_gib_4bit": totals["4bit"],
            "targets_gib": TARGETS_GIB, "latent_shape": list(latent_shape),
            "meets_targets": totals["bf16"] <= TARGETS_GIB["bf16"] and totals["4bit"] <= TARGETS_GIB["4bit"]}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    numbers = measure(args.preset, args.nsd_root, args.context)
    width = max(len(name) for name in numbers["components"])
    print(f"{args.preset} preset on one GPU (GiB; built from the published configurations on the meta device)")
    for name, gib in numbers["components"].items():
        print(f"  {name:<{width}}  {gib:7.3f}")
    print(f"  {'llm in 8-bit / 4-bit instead':<{width}}  {numbers['llm_gib']['8bit']:7.3f} / {numbers['llm_gib']['4bit']:.3f}")
    print(f"total: {numbers['total_gib_bf16']} GiB in bf16 (target ≤ {TARGETS_GIB['bf16']}), {numbers['total_gib_8bit']} "
          f"with the LLM in 8-bit, {numbers['total_gib_4bit']} in 4-bit (target ≤ {TARGETS_GIB['4bit']})")  # fmt: skip
    if args.json:
        write_json(args.json, numbers)
    return 0 if numbers["meets_targets"] or args.preset != "paper" else 1
