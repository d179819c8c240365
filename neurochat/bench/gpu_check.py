"""The paper preset on a GPU, at full size with random weights: peak memory and the latency of each action.

    python -m neurochat.bench gpu_check --json reports/benchmarks/gpu_check.json    # one GPU, under 10 minutes
    python -m neurochat.bench gpu_check --scale tiny --device cpu --steps 2        # the same script, tiny, on a CPU

1. Writes a weights root in the published layouts from the published configurations, with random
   weights (`neurochat.configs.build`): CLIP ViT-L/14, Stable unCLIP-small (768 px), Llama-3-8B in
   bf16, three ViT3D extractors of App. C (r = 14, 12, 10, on NSD's grid with a stand-in union mask),
   and a stage-2 fMRI-LLM over the LLM; and a small SimNSD tree to explore (or --nsd-root).
2. Loads them as the app does (`Explorer.load`: bf16, one CLIP, one VAE; --quantize for the LLM).
3. Times what a user does: select a trial, the first chat token, a reconstruction (β 0.93, --steps),
   a localization (the first one fits the subject's encoding maps), an ablation; and reads the peak
   GPU memory torch allocated and reserved.

Random weights say nothing about quality; sizes, memory and speed are those of the real models.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from neurochat.cli import add_nsd_root_option, write_json

GIB = 2**30
MESSAGE = "Describe the image concisely."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale", choices=("paper", "tiny"), default="paper", help="paper: the published sizes")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--steps", type=int, default=20, help="diffusion steps of the full schedule (β 0.93 runs 19)")
    parser.add_argument("--quantize", choices=("8bit", "4bit"), help="load the LLM through bitsandbytes")
    parser.add_argument("--work", metavar="DIR", help="where to write the weights (default: a temporary folder)")
    add_nsd_root_option(parser)  # default: a small SimNSD tree, generated in a few seconds
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def write_weights(root: Path, scale: str, device) -> Path:
    """The paper preset's weights root under `root`, random, in the published layouts (see the docstring)."""
    import torch

    from neurochat.bench.preprocess import synthetic_union_mask
    from neurochat.configs import VIT3D_FACTS, paper_fact
    from neurochat.configs.build import write_llm, write_paper_weights
    from neurochat.models.brainllm import BrainLLM, BrainLLMConfig, build_projector, extractor_facts
    from neurochat.models.extractor import ExtractorBundle, ExtractorConfig, FMRIExtractor, save_extractor, token_coordinates
    from neurochat.models.language_model import add_image_token
    from neurochat.models.unclip import native_image_size
    from neurochat.presets import PAPER_HUB_IDS, get_preset
    from neurochat.preprocess import PatchPreprocessor, PreprocessConfig

    write_paper_weights(root, scale, llm=False, device=device)
    preset = get_preset("paper", root)
    clip_dim = json.loads((preset.clip_dir / "config.json").read_text())["projection_dim"]
    vae = json.loads((preset.unclip_dir / "vae" / "config.json").read_text())
    size = native_image_size(preset.unclip_dir) // 2 ** (len(vae["block_out_channels"]) - 1)  # the latent's side
    facts = paper_fact(*VIT3D_FACTS)
    if scale == "tiny":
        facts.update(layers=2, hidden=24, heads=2, head_hidden=32)
    grid = tuple(facts["common_grid"])
    mask = synthetic_union_mask(grid)
    for r in facts["patch_sizes"]:
        preprocessor = PatchPreprocessor(PreprocessConfig(grid, r), mask)
        config = ExtractorConfig(layout="vit3d", patch_size=r, n_tokens=preprocessor.n_patches, hidden=facts["hidden"],
                                 layers=facts["layers"], heads=facts["heads"], head_hidden=facts["head_hidden"],
                                 clip_dim=clip_dim, latent_shape=(4, size, size))  # fmt: skip
        with torch.device(device):
            model = FMRIExtractor(config, token_coordinates(preprocessor, "vit3d"))
        save_extractor(ExtractorBundle(model, preprocessor, {"random": True}), preset.layout.extractor_dir("vit3d", r))
    main = json.loads((preset.layout.extractor_dir("vit3d", facts["patch_sizes"][0]) / "config.json").read_text())
    main_config = ExtractorConfig(**main["extractor"])
    # the LLM is written from the GPU (Llama-3-8B initialises in seconds there) and its stage-2 fMRI-LLM
    # references it, as a LoRA or stage-1 folder does
    lm_dir = root / PAPER_HUB_IDS["llm"]
    lm, tokenizer = write_llm(lm_dir, scale, device=device)
    add_image_token(lm, tokenizer)
    brainllm = BrainLLMConfig(fmri_hidden=main_config.hidden, n_fmri_tokens=1 + main_config.n_tokens,
                              extractor=extractor_facts(preset.layout.extractor_dir("vit3d", main_config.patch_size), main_config))  # fmt: skip
    projector = build_projector(brainllm.projector, main_config.hidden, lm.get_input_embeddings().embedding_dim)
    BrainLLM(lm, tokenizer, brainllm, projector, lm_source=lm_dir).save(preset.layout.brainllm_dir(), language_model="reference")
    del lm
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    return root


def run(args: argparse.Namespace) -> int:
    import torch

    from neurochat.explorer import Explorer
    from neurochat.reconstruct import DEFAULT_BETA

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA GPU: run this on a GPU machine, or try --scale tiny --device cpu")
        return 2
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="neurochat-gpu-check-"))
    numbers: dict = {"scale": args.scale, "device": torch.cuda.get_device_name(device) if cuda else "cpu",
                     "steps": args.steps, "beta": DEFAULT_BETA, "quantize": args.quantize}  # fmt: skip

    def timed(name: str, action):
        """Run one action, record its seconds (or its error, so that the others still run), save so far."""
        if cuda:
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        try:
            result = action()
            if cuda:
                torch.cuda.synchronize(device)
            numbers[name] = round(time.perf_counter() - started, 3)
        except Exception as error:  # noqa: BLE001 — a check reports every failure, then exits non-zero
            numbers[f"{name}_error"] = f"{type(error).__name__}: {error}"[:500]
            result = None
        print(f"  {name}: {numbers.get(name, numbers.get(name + '_error'))}", flush=True)
        if args.json:
            write_json(args.json, numbers)
        return result

    paths = timed("build_s", lambda: (write_weights(work / "weights", args.scale, device),
                                      args.nsd_root or _simnsd(work / "simnsd")))  # fmt: skip
    if paths is None:
        return 1
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    explorer = timed("load_s", lambda: Explorer.load("paper", nsd_root=paths[1], weights=paths[0], device=str(device),
                                                     log=lambda *_: None, quantization=args.quantize))  # fmt: skip
    if explorer is None:
        return 1
    if cuda:
        numbers["loaded_gib"] = round(torch.cuda.memory_allocated(device) / GIB, 2)
    subject = explorer.subjects[0]
    state = timed("select_s", lambda: explorer.select(subject, explorer.first_impression(subject)))
    turn = explorer.chat(state, MESSAGE)
    pieces = iter(turn)
    timed("first_token_s", lambda: next(pieces, ""))
    timed("rest_of_chat_s", lambda: sum(1 for _ in pieces))
    numbers["chat_characters"] = len(turn.text)
    for name, seed in (("reconstruct_first_s", 0), ("reconstruct_s", 1)):  # the first one includes warm-up
        picture = timed(name, lambda: explorer.reconstruct(state, beta=DEFAULT_BETA, steps=args.steps, seed=seed))
    numbers["picture"] = list(picture.shape) if picture is not None else None
    for name, concept in (("localize_first_s", "person"), ("localize_s", "dog")):  # the first fits the encoding maps
        heatmap = timed(name, lambda: explorer.localize(state, concept))
    numbers["localize_method"] = heatmap.method if heatmap is not None else None
    timed("ablate_s", lambda: explorer.ablate(state, ["person"], beta=DEFAULT_BETA, steps=args.steps))
    if cuda:
        numbers["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / GIB, 2)
        numbers["peak_reserved_gib"] = round(torch.cuda.max_memory_reserved(device) / GIB, 2)
    print(json.dumps(numbers, indent=1))
    if args.json:
        write_json(args.json, numbers)
    return 1 if any(key.endswith("_error") for key in numbers) else 0


def _simnsd(out: Path) -> Path:
    from neurochat.sim.generate import generate

    return generate(out, size="small", seed=0)
