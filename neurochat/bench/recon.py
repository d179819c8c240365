"""Time one reconstruction (Eq. 4) at the preset's resolution and default steps, and the extractor forward.

    python -m neurochat.bench recon [--preset demo] [--runs 5] [--json PATH]

Medians over `--runs` after one warm-up: the extractor forward on one recording, the VAE decode of
ẑ_v (β = 0), a full reconstruction at β = 0.93 with the default steps and guidance, and two pictures
(what a β change draws while a concept is off: the recording and its ablation) in one batch beside two passes.
"""

from __future__ import annotations

import argparse
import statistics
import time

from neurochat.cli import add_dataset_options, write_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_options(parser, max_session=False)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's (demo 10, paper 20)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def _median_seconds(function, runs: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(args: argparse.Namespace) -> int:
    import torch

    from neurochat.models import quiet_libraries
    from neurochat.models.bundle import load_main_extractor
    from neurochat.models.unclip import load_unclip
    from neurochat.nsd import NSDDataset
    from neurochat.paths import ensure_simnsd
    from neurochat.presets import get_preset
    from neurochat.reconstruct import DEFAULT_BETA, Reconstructor

    quiet_libraries()
    preset = get_preset(args.preset, args.weights)
    dataset = NSDDataset(args.nsd_root or ensure_simnsd("demo"))
    bundle = load_main_extractor(preset, device=args.device)
    reconstructor = Reconstructor(load_unclip(preset, device=args.device))
    steps = args.steps or preset.denoising_steps
    volume = dataset.read_trial(dataset.subjects[0], int(dataset.trials(dataset.subjects[0]).trial[0]))

    def encode():
        with torch.no_grad():
            return bundle.model(bundle.tokens(bundle.preprocessor(volume[None]).to(args.device)))

    output = encode()
    prompt = "a photo of a cat on the grass"
    pair_clip, pair_vae = output.clip.repeat(2, 1), output.vae.repeat(2, 1, 1, 1)

    def draw(clip, vae, prompts):
        return reconstructor(clip, vae, prompts, beta=DEFAULT_BETA, seed=0, steps=steps)

    numbers = {
        "extractor_s": _median_seconds(encode, args.runs),
        "decode_s": _median_seconds(lambda: reconstructor.decode(output.vae), args.runs),
        "recon_s": _median_seconds(lambda: draw(output.clip, output.vae, prompt), args.runs),
        "two_pictures_one_batch_s": _median_seconds(lambda: draw(pair_clip, pair_vae, [prompt] * 2), args.runs),
        "two_pictures_two_passes_s": _median_seconds(lambda: [draw(pair_clip[i : i + 1], pair_vae[i : i + 1], prompt)
                                                             for i in range(2)], args.runs),  # fmt: skip
        "steps": steps,
        "image_size": preset.image_size,
        "torch_threads": torch.get_num_threads(),
    }
    print(f"{args.preset} preset on {args.device}, {torch.get_num_threads()} threads, median of {args.runs}:")
    print(f"extractor forward (one recording): {numbers['extractor_s'] * 1000:.1f} ms")
    print(f"VAE decode of ẑ_v (β = 0):         {numbers['decode_s'] * 1000:.1f} ms")
    print(f"reconstruction, β = {DEFAULT_BETA}, {steps} steps, {preset.image_size} px: {numbers['recon_s']:.3f} s")
    batch, passes = numbers["two_pictures_one_batch_s"], numbers["two_pictures_two_passes_s"]
    print(f"two pictures (a β change with a concept off): one batch {batch:.3f} s, two passes {passes:.3f} s "
          f"({batch / passes:.2f}x)")
    if args.json:
        write_json(args.json, numbers)
    return 0
