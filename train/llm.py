"""Train the language side: the demo LM (stage 0), the projector f_t (stage 1), f_t + LLM (stage 2).

    python -m train.llm --stage 0 --preset demo                 # demo tokenizer + small Llama on the extension text
    python -m train.llm --stage 1 --preset demo                 # f_t only, LLM frozen (paper App. C)
    python -m train.llm --stage 2 --preset demo [--lora]        # f_t + LLM, fully or with LoRA adapters
    accelerate launch -m train.llm --stage 1 --preset paper --weights W --nsd-root /data/nsd --max-session 37
    accelerate launch --config_file configs/accelerate/zero2.yaml -m train.llm --stage 2 --preset paper ...   # 8 GPUs

Precision: trainable weights are always float32 masters (never pure-bf16 AdamW); on a GPU the paper
preset computes under bf16 autocast and keeps frozen weights (the LLM in stage 1 and under LoRA) in
bf16, with gradient checkpointing on: stage 1 and stage 2 with --lora fit one 24 GB GPU, full stage 2
of Llama-3-8B needs several (docs/real_nsd.md). The paper preset's fMRI tokens are cached per
extractor and dataset (`python -m train.prepare` makes them ahead, on the GPU).

Defaults: the paper's lr 2e-5 and one epoch per stage (App. C) for `paper`; for `demo`, whose tiny
model starts from scratch, the larger steps of `neurochat.training.llm.DEMO_STAGE_SETTINGS`.

Demo budget: a Llama of 4 layers × 256 (3.5 M parameters), batch 16; stage 0 reads blocks of 512
tokens, stages 1–2 conversations of the 52 fMRI tokens and about 55 text tokens, batched by length
so that a batch pads little. The demo bundle's manifest (`checkpoints/demo/manifest.json`) records
each stage's command and seconds; `python -m train.demo_bundle --out checkpoints/demo --only llm1 llm2
--force --threads 2` measures stages 1 and 2 again, `python -m neurochat.bench training` one step of
each. With another job on the machine, prefer --threads 1: two threads contending for the cores
are several times slower.

Outputs (override with --out): stage 0 → the preset's LLM folder; stages 1 and 2 → the preset's
fMRI-LLM folders of those stages (stage 2's is what the explorer loads; `WeightsLayout.brainllm_dir`
in neurochat/models/bundle.py names them). Stage 1 and LoRA folders reference the base LM
instead of copying it. Interrupted runs resume from their last saved epoch (or --save-every step).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Sequence

from neurochat.cli import add_dataset_options, add_verbosity_options, configure_logging, run_main
from neurochat.language import TASKS

log = logging.getLogger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.llm", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", type=int, choices=(0, 1, 2), required=True)
    add_dataset_options(parser, annotations=True)
    parser.add_argument("--subject", action="append", help="train on these subjects only (repeatable)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS), help="extension sample kinds (App. A.2)")
    parser.add_argument("--extractor", help="stages 1–2: extractor checkpoint (default: the preset's main ViT3D)")
    parser.add_argument("--llm", help="stage 1: causal-LM folder (default: the preset's LLM)")
    parser.add_argument("--init", help="stage 2: the stage-1 BrainLLM folder to start from (default: the preset's)")
    parser.add_argument("--lora", action="store_true", help="stage 2: train LoRA adapters instead of all LLM weights")
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--merge-lora", action="store_true", help="stage 2 LoRA: save the merged LM instead of adapters")
    parser.add_argument("--epochs", type=int, help="default: 1 (paper); demo: see DEMO_STAGE_SETTINGS")
    parser.add_argument("--lr", type=float, help="default: 2e-5 (paper); demo: see DEMO_STAGE_SETTINGS")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    parser.add_argument("--save-every", type=int, help="also save a resumable state every N steps")
    parser.add_argument("--eval-samples", type=int, default=64, help="test samples for the final validation loss")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                        help="precision of the frozen LLM weights (stage 1, LoRA); trainable weights are float32 "
                             "masters whatever this says (default: bfloat16 on a GPU, float32 on a CPU)")  # fmt: skip
    parser.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"),
                        help="bf16: forward passes under bf16 autocast (faster on a CPU with native bf16: "
                             "`python -m neurochat.bench precision`); fp16: accelerate's, with a gradient scaler "
                             "(GPU). Default: bf16 for the paper preset on a GPU, else no")  # fmt: skip
    parser.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                        help="recompute LLM activations in the backward pass (default: on for the paper preset)")  # fmt: skip
    parser.add_argument("--threads", type=int, help="torch intra-op threads (1 is fastest on a CPU another job shares)")
    parser.add_argument("--seed", type=int, default=0, help="seeds the extension's wordings and the training")
    parser.add_argument("--tiny", action="store_true", help="stage 0: a tiny LM (tests)")
    parser.add_argument("--out", help="output folder")
    parser.add_argument("--no-progress", action="store_true")
    add_verbosity_options(parser)
    args = parser.parse_args(argv)
    configure_logging(args)

    # heavy imports after argument parsing, so --help is instant
    import torch
    from accelerate import Accelerator

    from neurochat.language import build_extension
    from neurochat.nsd import NSDDataset
    from neurochat.paths import dataset_root
    from neurochat.presets import get_preset
    from neurochat.training.llm import LLMTrainConfig, stage_defaults

    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    if args.mixed_precision is None:
        args.mixed_precision = "bf16" if args.preset == "paper" and gpu else "no"
    if args.gradient_checkpointing is None:
        args.gradient_checkpointing = args.preset == "paper" and args.stage > 0
    preset = get_preset(args.preset, args.weights)
    settings = stage_defaults(args.preset, args.stage, args.lora)
    for name in ("lr", "epochs", "batch_size"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    config = LLMTrainConfig(stage=args.stage, seed=args.seed, max_steps=args.max_steps, save_every=args.save_every,
                            lora=args.lora, lora_r=args.lora_r, lora_alpha=args.lora_alpha, tasks=tuple(args.tasks),
                            eval_samples=args.eval_samples, mixed_precision="bf16" if args.mixed_precision == "bf16" else "no",
                            gradient_checkpointing=args.gradient_checkpointing, **settings)  # fmt: skip
    root = dataset_root(args.preset, args.nsd_root)

    # 1. The language extension (App. A.2): train samples = own images, test = the shared ones
    dataset = NSDDataset(root, max_session=args.max_session, annotations=args.annotations)
    train, test, summary = build_extension(dataset, seed=args.seed, subjects=args.subject, tasks=args.tasks)
    data_facts = {"nsd_root": str(root), "max_session": args.max_session, "subjects": summary["subjects"],
                  "extension_seed": args.seed, "samples": summary["samples"]}  # fmt: skip
    # bf16 is the training loop's own autocast (config.mixed_precision): accelerate allows one setting per
    # process, and the demo bundle may train float32 models in the same process first
    accelerator = Accelerator(cpu=not gpu, mixed_precision="fp16" if args.mixed_precision == "fp16" else None)
    # frozen weights may be bf16; a trained LM is loaded in float32, its master weights, rather than upcast later
    frozen = getattr(torch, args.dtype) if args.dtype else (torch.bfloat16 if gpu else torch.float32)
    dtype = torch.float32 if args.stage == 2 and not args.lora else frozen
    if args.dtype and dtype != frozen:
        log.info("stage 2 without --lora trains every LLM weight: they are loaded as float32 masters, not %s", args.dtype)

    if args.stage == 0:
        return _stage0(args, preset, config, train, test, data_facts, accelerator)
    return _stage12(args, preset, config, dataset, train, test, data_facts, accelerator, dtype)


def _stage0(args, preset, config, train, test, data_facts, accelerator) -> int:
    """Tokenizer (kept in the training state, so a resumed run uses the same one) + small Llama."""
    from dataclasses import asdict

    from transformers import AutoTokenizer

    from neurochat.models.demo_llm import DemoLLMConfig, build_llm, extension_texts, train_tokenizer
    from neurochat.training.llm import STATE_DIR, train_language_model

    out = Path(args.out) if args.out else preset.llm_dir
    llm_config = DemoLLMConfig(hidden=32, layers=2, heads=2, intermediate=64) if args.tiny else DemoLLMConfig()
    tokenizer_dir = out / STATE_DIR / "tokenizer"
    if tokenizer_dir.exists():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    else:
        tokenizer = train_tokenizer(extension_texts(train), llm_config.vocab_size, context=llm_config.context)
        tokenizer.save_pretrained(tokenizer_dir)
    lm = build_llm(tokenizer, llm_config, seed=config.seed)
    n_parameters = sum(p.numel() for p in lm.parameters())
    log.info(f"stage 0: Llama {llm_config.layers} layers x {llm_config.hidden}, vocabulary {len(tokenizer)}, "
             f"{n_parameters / 1e6:.2f} M parameters → {out}")  # fmt: skip
    facts = {"data": data_facts, "demo_llm": asdict(llm_config)}
    result = train_language_model(lm, tokenizer, train, test, config, out, accelerator=accelerator,
                                  progress=not args.no_progress, facts=facts)  # fmt: skip
    last = result["history"][-1]["loss"] if result["history"] else float("nan")
    print(f"done: {result['steps']} steps in {result['seconds']} s; last epoch loss {last:.3f}, "
          f"validation loss {result['val_loss']:.3f} → {out}")  # fmt: skip
    return 0


def _stage12(args, preset, config, dataset, train, test, data_facts, accelerator, dtype) -> int:
    from dataclasses import replace

    import torch

    from neurochat.data import TrialBank
    from neurochat.errors import ConfigError
    from neurochat.models.brainllm import BrainLLM, load_brainllm
    from neurochat.models.bundle import main_extractor_dir
    from neurochat.models.extractor import load_extractor
    from neurochat.training.fmri_tokens import identify_extractor, token_cache_path
    from neurochat.training.llm import STATE_DIR, example_reply, extract_fmri, finish, fmri_key, train_brainllm

    # 2. The frozen extractor and its fMRI tokens for every sample we will read
    extractor_dir = Path(args.extractor) if args.extractor else main_extractor_dir(preset)
    if not (extractor_dir / "model.safetensors").exists():
        raise ConfigError(f"no extractor checkpoint at {extractor_dir}: train it first "
                          f"(`python -m train.extractor --preset {args.preset}`) or pass --extractor DIR")  # fmt: skip
    bundle = load_extractor(extractor_dir, device=accelerator.device)
    bundle.model.requires_grad_(False)  # frozen (App. C)
    facts = identify_extractor(bundle, extractor_dir)  # also names the token cache

    # 3. The model: a new projector over the LLM (stage 1), or the stage-1 result (stage 2)
    out = Path(args.out) if args.out else preset.layout.brainllm_dir("vit3d", args.stage)
    if args.stage == 1:
        lm_dir = Path(args.llm) if args.llm else preset.llm_dir
        if not (lm_dir / "config.json").exists():
            hint = "`python -m train.llm --stage 0 --preset demo`" if args.preset == "demo" else "see neurochat/presets.py"
            raise ConfigError(f"no language model at {lm_dir}: make it first ({hint}) or pass --llm DIR")
        model = BrainLLM.from_language_model(lm_dir, bundle.config.hidden, 1 + bundle.config.n_tokens, dtype=dtype,
                                             device=accelerator.device, extractor=facts, seed=config.seed)  # fmt: skip
        previous = {}
    else:
        init = Path(args.init) if args.init else preset.layout.brainllm_dir("vit3d", 1)
        model = load_brainllm(init, dtype=dtype, device=accelerator.device)
        if model.has_adapter:
            raise ConfigError(f"{init} holds LoRA adapters; stage 2 starts from a stage-1 folder (projector only)")
        if model.config.extractor.get("sha256_16") not in (None, facts["sha256_16"]):
            log.warning(f"{init} was trained on the fMRI tokens of {model.config.extractor.get('folder')}; "
                        f"stage 2 reads {extractor_dir}, whose weights differ")  # fmt: skip
        model.config = replace(model.config, extractor=facts)
        previous = dict(model.config.training)
    model.check_fmri(torch.zeros(1, 1 + bundle.config.n_tokens, bundle.config.hidden))  # extractor ↔ BrainLLM

    train = [s for s in train if s["task"] in config.tasks]
    test = [s for s in test if s["task"] in config.tasks]
    keys = [fmri_key(s) for s in train] + [fmri_key(s) for s in test[: max(1, config.eval_samples)]]
    bank = TrialBank(dataset, bundle.preprocessor, subjects=data_facts["subjects"])
    # the paper preset's tokens outlive the run (prepared ahead by train.prepare, shared by both stages)
    cache = token_cache_path(bundle, dataset.root) if args.preset == "paper" else out / STATE_DIR / "fmri_tokens.npy"
    features = extract_fmri(bundle, bank, keys, cache, progress=not args.no_progress)

    # 4. Train, describe, save
    result = train_brainllm(model, train, test, features, config, out, accelerator=accelerator,
                            progress=not args.no_progress)  # fmt: skip
    result["example"] = example_reply(model, test, features)
    result["data"] = data_facts
    training = {**previous, f"stage{args.stage}": result}
    if accelerator.is_main_process:
        reference = args.stage == 1 or (args.lora and not args.merge_lora)  # the base LM's weights did not change
        model.save(out, language_model="reference" if reference else "copy", training=training)
    finish(out, accelerator)
    last = result["history"][-1]["loss"] if result["history"] else float("nan")
    print(f"done: stage {args.stage}{' LoRA' if args.lora else ''}, {result['steps']} steps in {result['seconds']} s; "
          f"last epoch loss {last:.3f}, validation loss {result['val_loss']:.3f} → {out}")  # fmt: skip
    if result["example"]:
        print(f"example ({result['example']['sample']}): {result['example']['reply']!r}")
    return 0


if __name__ == "__main__":
    run_main(main)
