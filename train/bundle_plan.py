"""The demo bundle's stages: the command each runs, what each needs, and running them side by side.

`python -m train.demo_bundle` (its docstring lists the stages) plans with these; with `--jobs N`
up to N stages train at once, each in its own process, as soon as the stages they read are done.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from neurochat.models.bundle import WeightsLayout
from neurochat.sim.config import SUBJECTS

DEMO_EXTRACTOR_EPOCHS = 8  # the localization ensemble's r = 6 / 5 and the per-subject models
LLM_EXTRACTOR_EPOCHS = 30  # the two r = 7 models whose tokens the LLM reads (the paper's 30, App. C)


def stage_commands(size: str, out: Path, data: Path, threads: int | None = None,
                   mixed_precision: str = "no") -> dict[str, list[tuple[str, list[str]]]]:  # fmt: skip
    """For each stage, the (module, argv) runs it is made of."""
    micro = size == "micro"
    bundle = WeightsLayout(out)
    thread_option = ["--threads", str(threads)] if threads else []
    # bf16 autocast where it pays (neurochat/training/precision.py): the VAE, the extractors and the LLM
    # stages; the UnCLIP decoder gains nothing from it and CLIP's gain is not yet measured cleanly: float32
    bf16 = ["--mixed-precision", "bf16"] if mixed_precision == "bf16" else []
    weights = ["--weights", str(out)]
    nsd = ["--nsd-root", str(data)]
    quick_extractor = ["--tiny", "--max-steps", "2"] if micro else []
    # The main r = 7 model and its flattened "w/o ViT3D" twin train the paper's 30 epochs: at 8 the main
    # model's own scores held (CLIP two-way 96.1% vs 95.9–96.2%), but the LLM trained on its tokens fell
    # beyond noise (LM stage 1 epoch loss 0.458 vs 0.446, concept recall 30.4% vs 40.1%); on a 30-epoch
    # model it came back (0.446, 38.9%). The other extractors only localize or fill Table 1's
    # extractor rows and train 8 epochs so that the rebuild stays near 3 h on 2 cores (README, "How long
    # a rebuild takes").
    def epochs(count: int) -> list[str]:
        return [] if micro else ["--epochs", str(count)]

    extractors = {}
    for r in (7, 6, 5):  # the main model first, then the rest of the localization ensemble
        count = LLM_EXTRACTOR_EPOCHS if r == 7 else DEMO_EXTRACTOR_EPOCHS
        extractors[f"extractor_vit3d_r{r}"] = ["--patch-size", str(r), *epochs(count), *bf16,
                                               "--out", str(bundle.extractor_dir("vit3d", r))]  # fmt: skip
    extractors["extractor_flattened_r7"] = ["--layout", "flattened", *epochs(LLM_EXTRACTOR_EPOCHS), *bf16,
                                            "--out", str(bundle.extractor_dir("flattened", 7))]  # fmt: skip
    for subject in SUBJECTS:  # the "w/o C_Subj" models, one per SimNSD subject
        extractors[f"extractor_{subject}_r7"] = ["--subject", subject, *epochs(DEMO_EXTRACTOR_EPOCHS), *bf16,
                                                 "--out", str(bundle.extractor_dir("subject_specific", 7, subject))]  # fmt: skip
    vision = ["--out", str(out), "--no-progress", *thread_option] + (["--clip-steps", "3", "--vae-steps", "3", "--pool-size", "128", "--eval-size", "64",
                                                       "--clip-batch-size", "16", "--vae-batch-size", "8"] if micro else [])
    # The decoder's schedule is a step count, not a time, so a rebuild trains the same decoder on any
    # machine; it is the longest stage and resumes from its saved state when the command runs again.
    decoder_recipe = ["--tiny", "--steps", "2", "--pool-size", "64", "--batch-size", "8"] if micro else []
    decoder = ["--out", str(bundle.unclip_dir), "--clip", str(bundle.clip_dir), "--no-progress", *thread_option, *decoder_recipe]
    llm_quick = ["--max-steps", "2"] if micro else []
    llm = ["--preset", "demo", *weights, *nsd, "--no-progress", *thread_option, *bf16]
    return {
        # CLIP and VAE train side by side (--jobs 2), then one short stage measures both
        "vision_clip": [("train.vision", [*vision, "--part", "clip"])],
        "vision_vae": [("train.vision", [*vision, "--part", "vae", *(["--vae-mixed-precision", "bf16"] if bf16 else [])])],
        "vision": [("train.vision", [*vision, "--part", "finish"])],
        **{name: [("train.extractor", ["--preset", "demo", *weights, *nsd, *quick_extractor, "--no-progress", *thread_option, *extra])]
           for name, extra in extractors.items()},
        "decoder": [("train.unclip", decoder)],
        "llm0": [("train.llm", ["--stage", "0", *llm, *llm_quick, *(["--tiny"] if micro else [])])],
        "llm1": [("train.llm", ["--stage", "1", *llm, *llm_quick])],
        "llm2": [("train.llm", ["--stage", "2", *llm, *llm_quick])],
        # "w/o ViT3D" of Table 1: the same recipe on the flattened-voxel extractor
        "llm_flattened": [
            ("train.llm", ["--stage", "1", *llm, *llm_quick, "--extractor", str(bundle.extractor_dir("flattened", 7)),
                           "--out", str(bundle.brainllm_dir("flattened", 1))]),
            ("train.llm", ["--stage", "2", *llm, *llm_quick, "--extractor", str(bundle.extractor_dir("flattened", 7)),
                           "--init", str(bundle.brainllm_dir("flattened", 1)), "--out", str(bundle.brainllm_dir("flattened", 2))]),
        ],
    }


def stage_needs(stage: str) -> list[str]:
    """The stages whose outputs `stage` reads (the SimNSD data comes before all of them)."""
    if stage.startswith("extractor_") or stage == "decoder":
        return ["vision"]  # CLIP and VAE: the extractors' targets, the decoder's image embedding
    return {"vision": ["vision_clip", "vision_vae"], "llm1": ["llm0", "extractor_vit3d_r7"], "llm2": ["llm1"],
            "llm_flattened": ["llm0", "extractor_flattened_r7"]}.get(stage, [])  # fmt: skip


# One-thread seconds of each demo stage, from the manifest of a measured rebuild (`stages.*.seconds`);
# only the start order uses them, so rough values do.
ONE_THREAD_SECONDS = {"vision_clip": 1700, "vision_vae": 2950, "vision": 100, "llm0": 2706, "decoder": 2870,
                      "extractor_vit3d_r7": 2290, "extractor_vit3d_r5": 1500, "llm_flattened": 2200, "llm2": 1650,
                      "extractor_vit3d_r6": 1120, "extractor_flattened_r7": 1160, "llm1": 1210,
                      **{f"extractor_{s}_r7": 160 for s in SUBJECTS}}  # fmt: skip


def waiting_on(stage: str, stages: Sequence[str]) -> int:
    """How many of `stages` need `stage`, directly or not."""
    return sum(1 for other in stages if stage in _all_needs(other))


def start_order(stages: Sequence[str]) -> list[str]:
    """The order in which ready stages start: those that more stages wait on first; among equals
    the longest, so that the lanes finish close together."""
    return sorted(stages, key=lambda stage: (-waiting_on(stage, stages), -ONE_THREAD_SECONDS.get(stage, 0)))


def run_in_parallel(stages: Sequence[str], done: set[str], jobs: int, base_argv: list[str], logs: Path) -> None:
    """Run `stages` as separate `--only STAGE` processes, at most `jobs` at a time, each as soon as
    the stages it needs are done, in `start_order`. Each process writes its
    own log under `logs` and records its stage in the manifest, as a single-stage run does."""
    import subprocess
    import sys

    from neurochat.paths import REPO_ROOT

    pending = start_order(stages)
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    logs.mkdir(parents=True, exist_ok=True)
    failed = []
    while pending or running:
        ready = [stage for stage in pending if all(need in done for need in stage_needs(stage))]
        while ready and len(running) < jobs and not failed:
            stage = ready.pop(0)
            pending.remove(stage)
            with open(logs / f"{stage}.log", "w") as log_file:
                process = subprocess.Popen([sys.executable, "-m", "train.demo_bundle", *base_argv, "--only", stage],
                                           cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT)  # fmt: skip
            running[stage] = (process, time.perf_counter())
            print(f"[{stage}] started (log: {logs / f'{stage}.log'})", flush=True)
        if not running:
            if failed:
                break
            raise SystemExit(f"stages {', '.join(pending)} wait on stages that are neither done nor planned")
        time.sleep(1.0)
        for stage, (process, started) in list(running.items()):
            if process.poll() is None:
                continue
            del running[stage]
            if process.returncode:
                failed.append(stage)
                print(f"[{stage}] failed with exit code {process.returncode}: see {logs / f'{stage}.log'}", flush=True)
            else:
                done.add(stage)
                print(f"[{stage}] done in {time.perf_counter() - started:.0f} s", flush=True)
    if failed:
        raise SystemExit(f"stage(s) {', '.join(failed)} failed: see their logs in {logs}; run the command again to resume")


def _all_needs(stage: str) -> set[str]:
    needs = set(stage_needs(stage))
    for need in list(needs):
        needs |= _all_needs(need)
    return needs
