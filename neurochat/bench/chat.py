"""Chat speed: time to first token and tokens/s of a trained BrainLLM answering one test recording.

    python -m neurochat.bench chat [--preset demo] [--brainllm DIR] [--runs 5] [--json PATH]

The recording is the first shared (test) image of the first subject, its repetitions' voxels
averaged (App. C.1), through the extractor the BrainLLM was trained with. The instruction is
Table 3's first brief-description instruction; decoding is greedy. Each run times the whole call,
fMRI projection and prompt included: first token = from the call to the first generated token;
tokens/s = the tokens after the first over the time after the first. The median (p50) of the runs
is reported, after one untimed warm-up run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from neurochat.cli import add_dataset_options, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_options(parser, max_session=False)
    parser.add_argument("--brainllm", help="a trained BrainLLM folder (default: the preset's)")
    parser.add_argument("--extractor", help="extractor checkpoint (default: the one the BrainLLM was trained with)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported (default: 5)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def run(args: argparse.Namespace) -> int:
    import torch
    from transformers.generation.streamers import BaseStreamer

    from neurochat.data import TrialBank
    from neurochat.errors import ConfigError
    from neurochat.language import BRIEF_INSTRUCTIONS
    from neurochat.models.brainllm import load_brainllm, trained_extractor_dir
    from neurochat.models.bundle import has_brainllm
    from neurochat.models.extractor import load_extractor
    from neurochat.nsd import NSDDataset
    from neurochat.paths import ensure_simnsd
    from neurochat.presets import get_preset
    from neurochat.training.llm import extract_fmri

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.runs < 1:
        raise ConfigError(f"--runs {args.runs}: give at least one run")

    # 1. The BrainLLM, and the extractor it was trained with
    preset = get_preset(args.preset, args.weights)
    folder = Path(args.brainllm) if args.brainllm else preset.layout.brainllm_dir()
    if not has_brainllm(folder):
        raise ConfigError(
            f"no trained BrainLLM at {folder}: train it with `python -m train.llm --stage 0 --preset {args.preset}` "
            f"(demo only), then `--stage 1` and `--stage 2`, or pass --brainllm DIR"
        )
    model = load_brainllm(folder, dtype=getattr(torch, args.dtype), device=args.device)
    extractor_dir = Path(args.extractor) if args.extractor else trained_extractor_dir(folder)
    if extractor_dir is None or not (extractor_dir / "model.safetensors").exists():
        raise ConfigError(f"the extractor {extractor_dir} that {folder} was trained with is missing: pass --extractor DIR")
    bundle = load_extractor(extractor_dir, device=args.device)

    # 2. One test recording: the first subject's first shared image, repetitions averaged
    root = Path(args.nsd_root) if args.nsd_root else ensure_simnsd("demo") if args.preset == "demo" else None
    if root is None:
        raise ConfigError("the paper preset needs --nsd-root DIR")
    dataset = NSDDataset(root)
    subject = dataset.subjects[0]
    table = dataset.trials(subject)
    if not len(table.test_images):
        raise ConfigError(f"{subject} has no shared test image on disk in {root}")
    nsd_id = int(table.test_images[0])
    key = (subject, *sorted(int(t) for t in table.trials_of_image(nsd_id)))
    bank = TrialBank(dataset, bundle.preprocessor, subjects=[subject])
    fmri = extract_fmri(bundle, bank, [key]).batch([key])[0]  # (T, D)

    # 3. Timed greedy runs; a streamer stamps each token as generate() hands it over
    class TokenClock(BaseStreamer):
        def __init__(self):
            self.times: list[float] = []
            self.prompt_seen = False

        def put(self, value):
            if not self.prompt_seen:  # generate() first passes the prompt (empty for inputs_embeds)
                self.prompt_seen = True
                return
            self.times.append(time.perf_counter())

        def end(self):
            pass

    instruction = BRIEF_INSTRUCTIONS[0]
    first_token, rates, reply = [], [], None
    for index in range(args.runs + 1):
        clock = TokenClock()
        started = time.perf_counter()
        reply = model.generate(fmri, instruction, max_new_tokens=args.max_new_tokens, streamer=clock)
        if index == 0:
            continue  # warm-up
        first_token.append(clock.times[0] - started)
        if len(clock.times) > 1:
            rates.append((len(clock.times) - 1) / (clock.times[-1] - clock.times[0]))
    first_token_s = statistics.median(first_token)
    tokens_per_s = statistics.median(rates) if rates else float("nan")

    print(f"chat bench: {folder} on {args.device} ({args.dtype}, torch threads {torch.get_num_threads()}); "
          f"{model.config.n_fmri_tokens} fMRI tokens of {subject}, 73k id {nsd_id} (repetitions averaged)")  # fmt: skip
    print(f"instruction {instruction!r}, greedy, up to {args.max_new_tokens} new tokens, {args.runs} runs (p50)")
    print(f"reply ({len(reply.token_ids)} tokens): {reply.text!r}")
    print(f"time to first token: {first_token_s * 1000:.1f} ms")
    print(f"tokens per second:   {tokens_per_s:.1f}")
    if args.json:
        write_json(args.json, {
            "first_token_s": first_token_s,
            "tokens_per_s": tokens_per_s,
            "runs": args.runs,
            "new_tokens": len(reply.token_ids),
            "prompt_tokens": reply.prompt_tokens,
            "brainllm": str(folder),
            "device": args.device,
            "dtype": args.dtype,
            "torch_threads": torch.get_num_threads(),
        })  # fmt: skip
    return 0
