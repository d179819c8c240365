"""Rebuild the whole demo bundle from nothing: data, every model in dependency order, a manifest.

    python -m train.demo_bundle --out checkpoints/demo --jobs 2        # the committed demo (hours on 2 cores)
    python -m train.demo_bundle --out /tmp/micro --size micro          # the same chain in minutes (CI)

With `--jobs N` up to N stages train at once, each in its own process on one thread (`--threads`),
as soon as the stages it reads are done (`stage_needs`): on 2 cores two one-thread stages finish
sooner than one two-thread stage after the other. Each stage's output goes to OUT/logs/STAGE.log.
`--mixed-precision auto` (the default) trains the VAE, the extractors and the LLM stages under bf16
autocast where the CPU multiplies bf16 natively (0.5-0.8x their float32 step time, `python -m
neurochat.bench precision`), and in float32 elsewhere; CLIP and the decoder always train in float32.

Stages, each resumable (a finished stage is skipped when the command runs again):
  data        SimNSD (demo size; `small` for micro)
  vision_clip, vision_vae   CLIP and VAE on pool pictures, side by side   (train/vision.py --part)
  vision      both measured on held-out pool pictures, the vision manifest
  extractor_* ViT3D r = 7, 6, 5 (the localization ensemble), the flattened "w/o ViT3D" baseline and
              the four "w/o C_Subj" subject models, one stage each   (train/extractor.py)
  decoder     the UnCLIP UNet                               (train/unclip.py)
  llm0..llm2  demo LM, then the fMRI projector, then projector + LM   (train/llm.py)
  pack        float32 weights stored as float16 (every loader casts them back to float32 on CPU),
              which halves the bundle; runs once every training stage is done, or with --only pack
  check       the bundle loads in the explorer and answers, reconstructs, localizes and ablates
  evaluate    each component scored on the SimNSD test set (the report's evaluations; the extractors
              and the LLM on all of it, the decoder on 10 recordings per subject, localization on
              40 recordings and 40 ablation cases; a handful at micro)
The manifest (OUT/manifest.json) records each stage's command, wall time and outputs, the
evaluation numbers, and the sha256 and size of every file.

    python -m train.demo_bundle --out /tmp/rebuilt --compare checkpoints/demo/manifest.json

puts a rebuilt bundle's evaluation numbers beside the committed ones (`--only evaluate` scores an
existing bundle again without training anything).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Sequence

from neurochat.cli import run_main
from neurochat.sim.config import SUBJECTS

MANIFEST = "manifest.json"
DEMO_EXTRACTOR_EPOCHS = 8  # the localization ensemble's r = 6 / 5 and the per-subject models
LLM_EXTRACTOR_EPOCHS = 30  # the two r = 7 models whose tokens the LLM reads (the paper's 30, App. C)
LOCK = ".manifest.lock"  # held while a process updates the manifest
LOGS = "logs"  # --jobs: one log per stage process (not part of the bundle)


def stage_commands(size: str, out: Path, data: Path, threads: int | None = None,
                   mixed_precision: str = "no") -> dict[str, list[tuple[str, list[str]]]]:  # fmt: skip
    """For each stage, the (module, argv) runs it is made of."""
    micro = size == "micro"
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
        extractors[f"extractor_vit3d_r{r}"] = ["--patch-size", str(r), *epochs(count), *bf16, "--out", str(out / "extractor" / f"vit3d_r{r}")]
    extractors["extractor_flattened_r7"] = ["--layout", "flattened", *epochs(LLM_EXTRACTOR_EPOCHS), *bf16,
                                            "--out", str(out / "extractor" / "flattened_r7")]  # fmt: skip
    for subject in SUBJECTS:  # the "w/o C_Subj" models, one per SimNSD subject
        extractors[f"extractor_{subject}_r7"] = ["--subject", subject, *epochs(DEMO_EXTRACTOR_EPOCHS), *bf16,
                                                 "--out", str(out / "extractor" / "subject_specific_r7" / subject)]  # fmt: skip
    vision = ["--out", str(out), "--no-progress", *thread_option] + (["--clip-steps", "3", "--vae-steps", "3", "--pool-size", "128", "--eval-size", "64",
                                                       "--clip-batch-size", "16", "--vae-batch-size", "8"] if micro else [])
    # The decoder's schedule is a step count, not a time, so a rebuild trains the same decoder on any
    # machine; it is the longest stage and resumes from its saved state when the command runs again.
    decoder_recipe = ["--tiny", "--steps", "2", "--pool-size", "64", "--batch-size", "8"] if micro else []
    decoder = ["--out", str(out / "unclip"), "--clip", str(out / "clip"), "--no-progress", *thread_option, *decoder_recipe]
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
            ("train.llm", ["--stage", "1", *llm, *llm_quick, "--extractor", str(out / "extractor" / "flattened_r7"),
                           "--out", str(out / "brainllm_flattened_stage1")]),
            ("train.llm", ["--stage", "2", *llm, *llm_quick, "--extractor", str(out / "extractor" / "flattened_r7"),
                           "--init", str(out / "brainllm_flattened_stage1"), "--out", str(out / "brainllm_flattened")]),
        ],
    }


def stage_needs(stage: str) -> list[str]:
    """The stages whose outputs `stage` reads (the SimNSD data comes before all of them)."""
    if stage.startswith("extractor_") or stage == "decoder":
        return ["vision"]  # CLIP and VAE: the extractors' targets, the decoder's image embedding
    return {"vision": ["vision_clip", "vision_vae"], "llm1": ["llm0", "extractor_vit3d_r7"], "llm2": ["llm1"],
            "llm_flattened": ["llm0", "extractor_flattened_r7"]}.get(stage, [])  # fmt: skip


# One-thread seconds of each demo stage on the 2-core machine of 2026-11-29, projected from seconds
# per step measured that day with the other core idle (README, "Training the demo";
# `python -m neurochat.bench training` for the extractors' and LLM's shortcuts). Only the start order
# uses them.
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


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _all_needs(stage: str) -> set[str]:
    needs = set(stage_needs(stage))
    for need in list(needs):
        needs |= _all_needs(need)
    return needs


@contextlib.contextmanager
def _locked(out: Path):
    """Hold OUT/.manifest.lock while reading and writing the manifest (stages may finish together)."""
    import fcntl

    with open(out / LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _merged_stages(manifest_path: Path, stages: dict, ran: dict) -> dict:
    """The stage records to write: ours, then what is on disk (other bundle processes may have
    recorded stages meanwhile), then the stages this process trained, which win."""
    on_disk = json.loads(manifest_path.read_text()).get("stages", {}) if manifest_path.exists() else {}
    return {**stages, **on_disk, **ran}


def _portable(text: str) -> str:
    """Paths inside the repository written relative to it, so the manifest reads the same anywhere."""
    from neurochat.paths import REPO_ROOT

    return text.replace(f"{REPO_ROOT}/", "")


def file_records(out: Path) -> dict[str, dict]:
    records = {}
    for path in sorted(out.rglob("*")):
        relative = path.relative_to(out)
        if path.is_file() and path.name not in (MANIFEST, LOCK) and not {"training_state", LOGS} & set(relative.parts):
            records[str(relative)] = {
                "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                "bytes": path.stat().st_size,
            }
    return records


def store_half_precision(out: Path) -> dict:
    """Rewrite every float32 tensor of the bundle's safetensors files as float16, in place.

    Training stays in float32; only storage is halved. A tensor whose values do not fit float16's
    range stays float32. Files already converted are left as they are, so this is safe to repeat.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    def fits(tensor) -> bool:
        return tensor.dtype == torch.float32 and tensor.numel() > 0 and bool(tensor.abs().max() <= torch.finfo(torch.float16).max)

    halved, before, after = 0, 0, 0
    for path in sorted(out.rglob("*.safetensors")):
        if "training_state" in path.parts:
            continue
        with safe_open(str(path), framework="pt") as handle:  # one read: the tensors and the metadata
            metadata = handle.metadata()
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
        if not any(fits(t) for t in tensors.values()):
            continue
        before += path.stat().st_size
        save_file({name: t.half() if fits(t) else t for name, t in tensors.items()}, path, metadata=metadata)
        after += path.stat().st_size
        halved += 1
    return {"files_halved": halved, "bytes_before": before, "bytes_after": after}


def check_bundle(out: Path, data: Path) -> dict:
    """Load the bundle in the explorer and use every feature once (the end-to-end check)."""
    import numpy as np

    from neurochat.explorer import Explorer

    explorer = Explorer.load("demo", nsd_root=data, weights=out, device="cpu", log=lambda *_: None)
    subject = explorer.subjects[0]
    choice = explorer.trial_choices(subject)[0]
    state = explorer.select(subject, choice.nsd_id)
    answer = "".join(explorer.chat(state, "Describe the image concisely."))
    picture = explorer.reconstruct(state, beta=0.93, steps=4)
    concept = explorer.true_concepts(state)[0]
    heatmap = explorer.localize(state, concept)
    ablated = explorer.ablate(state, [concept], steps=4)
    assert picture.shape == ablated.shape and heatmap.native.max() > 0 and np.isfinite(heatmap.native).all()
    return {"subject": subject, "nsd_id": choice.nsd_id, "answer": answer, "concept": concept,
            "picture_shape": list(picture.shape)}  # fmt: skip


# How much of the test set the evaluate stage scores (the report's command uses the demo sizes too;
# two-way identification needs at least two pictures per subject)
# The LLM is scored on every test recording (None: all; ~4 min at demo size): on the first 10
# recordings per subject the previous LLM's prompt hit rate read 10 points, and its concept recall
# 21 points, above the whole test set's.
# The reconstructions are drawn with 3 diffusion seeds and averaged: with one seed the committed bundle's
# CLIP two-way read 88.3–94.2% on the same 40 recordings (5 seeds; notebooks/experiments/recon_noise).
EVALUATION_SIZES = {"demo": {"per_subject": 10, "llm_per_subject": None, "max_recordings": 40, "ablation_cases": 40, "steps": 20,
                             "seeds": 3, "oracle_pictures": 100},
                    "micro": {"per_subject": 2, "llm_per_subject": 2, "max_recordings": 2, "ablation_cases": 1, "steps": 2,
                              "seeds": 2, "oracle_pictures": 2}}  # fmt: skip


def evaluate_bundle(out: Path, data: Path, size: str, log=print) -> dict:
    """Each component's headline numbers on the SimNSD test set, measured on this bundle.

    {"extractor": {model: {protocol: {clip_2way, clip_top1, vae_corr}}},
     "llm": {"brief": {bleu1, bleu4, cider, concept_recall}, "localization_parse_rate", "reconstruction_prompt_hit_rate",
             "reconstruction_prompt_hit_rate_plain"},
     "decoder": {run: {protocol: {pixcorr, ssim, clip_2way, object_hit}}},
     "decoder_oracle": {"oracle": {object_hit, clip_2way}, ...} (the decoder from true CLIP embeddings),
     "localization": {"auc": {ensemble, single, random, gradcam}, "ablation": {...}},
     "sizes": how much of the test set was scored}
    """
    from neurochat.evaluate import answer_key_localizer, load_main_models
    from neurochat.evaluate.caption import evaluate_captions
    from neurochat.evaluate.decoder import evaluate_decoder
    from neurochat.evaluate.extractor import evaluate_extractors, extractor_folders
    from neurochat.evaluate.localize import evaluate_ablation, evaluate_localization
    from neurochat.evaluate.recon import evaluate_reconstruction
    from neurochat.models.unclip import load_unclip
    from neurochat.models.vision import VisionEncoders
    from neurochat.nsd import NSDDataset
    from neurochat.presets import get_preset
    from neurochat.reconstruct import Reconstructor
    from neurochat.targets import dataset_targets

    sizes = EVALUATION_SIZES[size]
    preset = get_preset("demo", out)
    dataset = NSDDataset(data)
    vision = VisionEncoders.from_preset(preset)
    results: dict = {"sizes": sizes}
    results["extractor"] = evaluate_extractors(dataset, dataset_targets(dataset, vision),
                                               extractor_folders(preset.extractor_dir, preset.patch_sizes[0], dataset.subjects),
                                               log=log)  # fmt: skip
    main, flattened, brainllm = load_main_models(preset, log=log)
    captions = evaluate_captions(dataset, vision, main, brainllm, per_subject=sizes["llm_per_subject"], log=log)
    brief = captions["vit3d"]["brief"]
    results["llm"] = {"brief": {**{k: brief.get(k) for k in ("bleu1", "bleu4", "cider", "concept_recall")},
                                **{k: brief[k] for k in ("case_sd", "case_n") if k in brief}},
                      "localization_parse_rate": captions.get("localization_parse_rate"),
                      "reconstruction_prompt_hit_rate": captions.get("reconstruction_prompt_hit_rate"),
                      "reconstruction_prompt_hit_rate_plain": captions.get("reconstruction_prompt_hit_rate_plain"),
                      **{k: captions[k] for k in ("case_sd", "case_n") if k in captions}}  # fmt: skip
    reconstructor = Reconstructor(load_unclip(preset))
    recon = evaluate_reconstruction(dataset, vision, reconstructor, main, flattened, brainllm, per_subject=sizes["per_subject"],
                                    seeds=range(sizes["seeds"]), steps=sizes["steps"], log=log)  # fmt: skip
    results["decoder"] = decoder_headline(recon)
    oracle = evaluate_decoder(dataset, vision, reconstructor, limit=sizes["oracle_pictures"], steps=sizes["steps"])
    results["decoder_oracle"] = {k: v for k, v in oracle.items() if k != "pictures"}
    key, localizer = answer_key_localizer(preset, dataset, vision)
    results["localization"] = {
        "auc": evaluate_localization(dataset, localizer, key, max_recordings=sizes["max_recordings"], log=log),
        "ablation": evaluate_ablation(dataset, localizer, reconstructor, vision, key, max_cases=sizes["ablation_cases"],
                                      steps=sizes["steps"], log=log),  # fmt: skip
    }
    return results


HEADLINE_IMAGE_METRICS = ("pixcorr", "ssim", "clip_2way", "object_hit")


def decoder_headline(recon: dict) -> dict:
    """The manifest's decoder numbers from `evaluate_reconstruction`'s:
    {run: {protocol: {pixcorr, ssim, clip_2way[, seed_sd: {the same}]}}}."""

    def headline(m: dict) -> dict:
        numbers = {k: m[k] for k in HEADLINE_IMAGE_METRICS if k in m}
        if "seed_sd" in m:
            numbers["seed_sd"] = {k: sd for k, sd in m["seed_sd"].items() if k in HEADLINE_IMAGE_METRICS}
        return numbers

    return {run: {protocol: headline(m) for protocol, m in by_protocol.items()} for run, by_protocol in recon.items() if by_protocol}


def compare_evaluations(ours: dict, theirs: dict) -> list[str]:
    """One line per number both evaluations have: `path: ours vs theirs (difference)`.

    Where either side measured a number's spread across diffusion seeds (`seed_sd` beside it), the line
    also says whether the difference is within noise: within two standard errors of the difference of two
    means over each side's seeds (`sizes.seeds`, 1 when absent), the spread taken as the same on both
    sides (the mean of the two where both have it). Where a mean over cases kept its spread over them
    (`case_sd` beside it; the count in `case_n` beside it, or `n` beside it or a parent: localization AUC,
    ablation, concept recall, the LLM's routing rates), the line says whether the difference is within two
    standard errors of the difference of the two means. Other numbers (extractor, BLEU, CIDEr) have no
    measured spread here.
    """

    def flat(tree, prefix=""):
        if isinstance(tree, dict):
            for name, value in tree.items():
                yield from flat(value, f"{prefix}{name}." if prefix or name else name)
        elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
            yield prefix.rstrip("."), float(tree)

    def seed_sd(numbers: dict, name: str) -> float | None:
        parent, _, metric = name.rpartition(".")
        return numbers.get(f"{parent}.seed_sd.{metric}")

    def case_sd(numbers: dict, name: str) -> float | None:
        parent, _, metric = name.rpartition(".")
        return numbers.get(f"{parent}.case_sd.{metric}")

    def case_count(numbers: dict, name: str) -> float | None:
        """The number of cases behind a mean: its own `case_n`, else the `n` beside it or one of its parents."""
        parent, _, metric = name.rpartition(".")
        if f"{parent}.case_n.{metric}" in numbers:
            return numbers[f"{parent}.case_n.{metric}"]
        while parent:
            if f"{parent}.n" in numbers:
                return numbers[f"{parent}.n"]
            parent = parent.rpartition(".")[0]
        return None

    mine, other = dict(flat(ours)), dict(flat(theirs))
    my_seeds, their_seeds = (int(e.get("sizes", {}).get("seeds", 1)) for e in (ours, theirs))
    lines = []
    for name in mine:
        if name not in other or name.startswith(("sizes", "seconds")) or any(
                f".{spread}." in name for spread in ("seed_sd", "case_sd", "case_n")):  # fmt: skip
            continue
        difference = mine[name] - other[name]
        line = f"{name}: {mine[name]:.4f} vs {other[name]:.4f} ({difference:+.4f})"
        spreads = [sd for sd in (seed_sd(mine, name), seed_sd(other, name)) if sd is not None]
        if spreads:
            band = 2 * sum(spreads) / len(spreads) * (1 / my_seeds + 1 / their_seeds) ** 0.5
            line += f" {'within' if abs(difference) <= band else 'BEYOND'} noise (±{band:.4f}, diffusion seeds)"
        sd_mine, sd_other = case_sd(mine, name), case_sd(other, name)
        n_mine, n_other = case_count(mine, name), case_count(other, name)
        if (sd_mine is not None or sd_other is not None) and (n_mine or n_other):
            # two standard errors of a difference of two means over each side's cases; a side that kept no
            # spread or count (an older manifest) is taken to have the other's
            sd_mine, sd_other = (sd_other if sd_mine is None else sd_mine), (sd_mine if sd_other is None else sd_other)
            n_mine, n_other = n_mine or n_other, n_other or n_mine
            band = 2 * (sd_mine**2 / n_mine + sd_other**2 / n_other) ** 0.5
            line += f" {'within' if abs(difference) <= band else 'BEYOND'} noise (±{band:.4f}, sampling of the cases)"
        lines.append(line)
    return lines


def compare_files(ours: dict, theirs: dict) -> list[str]:
    """Which files both manifests list (`files`: name → sha256, bytes) are bitwise identical.

    Every training stage is seeded and runs one thread under `--jobs`, so a rebuild on the same kind of
    CPU should reproduce the weights exactly; the JSON records differ anyway (times, absolute paths).
    """
    common = sorted(set(ours) & set(theirs))
    differ = [name for name in common if ours[name]["sha256"] != theirs[name]["sha256"]]
    weights = [name for name in common if name.endswith(".safetensors")]
    weights_differ = [name for name in differ if name in weights]
    lines = [f"files: {len(common) - len(differ)} of the {len(common)} files both bundles hold are bitwise identical; "
             f"weights (.safetensors): {len(weights) - len(weights_differ)} of {len(weights)}"]  # fmt: skip
    lines += [f"differs: {name}" for name in differ]
    only = sorted(set(theirs) - set(ours))
    if only:
        lines.append(f"only in the other bundle: {len(only)} files (e.g. {only[0]})")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.demo_bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="bundle folder (checkpoints/demo for the committed demo)")
    parser.add_argument("--size", choices=("demo", "micro"), default="demo")
    parser.add_argument("--data", help="SimNSD tree to train on (default: the cached one of this size)")
    parser.add_argument("--only", nargs="+", help="run only these stages")
    parser.add_argument("--force", action="store_true", help="run stages again even if done")
    parser.add_argument("--threads", type=int, help="torch threads per training run (default with --jobs: 1)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="train up to this many stages at once, each in its own process (2 on 2 cores)")  # fmt: skip
    parser.add_argument("--mixed-precision", choices=("auto", "bf16", "no"), default="auto",
                        help="bf16 autocast for the VAE, extractor and LLM training (0.5-0.8x their step time); auto: bf16 "
                             "where the CPU multiplies bf16 natively (AVX512-BF16 or AMX), else float32")  # fmt: skip
    parser.add_argument("--compare", metavar="MANIFEST", help="print the evaluation beside this manifest's (e.g. the committed one)")
    args = parser.parse_args(argv)

    import importlib

    from neurochat.paths import ensure_simnsd
    from neurochat.training.precision import resolve_mixed_precision

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.setdefault("stages", {})
    jobs = f" --jobs {args.jobs}" if args.jobs > 1 else ""
    command = f"python -m train.demo_bundle --out {args.out} --size {args.size}{jobs}"
    machine = {"platform": platform.platform(), "python": platform.python_version()}
    # a partial run (`--only`, e.g. scoring the bundle again) is recorded beside the build, not over it:
    # the command, machine and seconds that made the bundle stay in the manifest
    partial = bool(args.only) and "command" in manifest
    if partial:
        manifest["last_partial_run"] = {"command": f"{command} --only {' '.join(args.only)}", "machine": machine}
    else:
        manifest.update({"command": command, "size": args.size, "machine": machine})

    started = time.perf_counter()
    data = Path(args.data) if args.data else ensure_simnsd("small" if args.size == "micro" else "demo")
    manifest["data"] = _portable(str(data))
    if args.jobs < 1:
        raise SystemExit(f"--jobs {args.jobs}: give 1 or more stages at a time")
    threads = args.threads or (1 if args.jobs > 1 else None)
    mixed_precision = resolve_mixed_precision(args.mixed_precision, "cuda" if _cuda() else "cpu")
    if args.mixed_precision == "auto" and not args.only:
        print("[precision] bf16 autocast for the VAE, extractor and LLM training: this machine multiplies bf16 natively"
              if mixed_precision == "bf16" else
              "[precision] float32 everywhere: this CPU has no native bf16 (AVX512-BF16 or AMX), so bf16 would be slower")  # fmt: skip
    manifest["mixed_precision"] = mixed_precision
    plan = stage_commands(args.size, out, data, threads, mixed_precision)
    if args.jobs > 1:
        done = {stage for stage in plan if manifest["stages"].get(stage, {}).get("done") and not args.force}
        todo = [stage for stage in plan if stage not in done and (not args.only or stage in args.only)]
        base_argv = ["--out", str(out), "--size", args.size, "--data", str(data), "--threads", str(threads),
                     "--mixed-precision", mixed_precision,
                     *(["--force"] if args.force else [])]  # fmt: skip
        run_in_parallel(todo, done, args.jobs, base_argv, out / LOGS)
        if manifest_path.exists():  # the stage processes recorded themselves there
            manifest["stages"] = json.loads(manifest_path.read_text()).get("stages", {})
        plan_to_run = {}
    else:
        plan_to_run = plan
    ran: dict[str, dict] = {}  # the stages this process trained: on disk, other processes' records win for the rest
    for stage, runs in plan_to_run.items():
        if args.only and stage not in args.only:
            continue
        if manifest["stages"].get(stage, {}).get("done") and not args.force:
            print(f"[{stage}] done before — skipped")
            continue
        stage_started = time.perf_counter()
        for module, argv_ in runs:
            print(f"[{stage}] python -m {module} {' '.join(argv_)}")
            code = importlib.import_module(module).main(argv_)
            if code:
                raise SystemExit(f"[{stage}] {module} failed with exit code {code}")
        entry = {"done": True, "seconds": round(time.perf_counter() - stage_started, 1),
                 "commands": [_portable(f"python -m {m} {' '.join(a)}") for m, a in runs]}  # fmt: skip
        # read the file again under a lock: other bundle processes may be running other stages into this folder
        with _locked(out):
            ran[stage] = entry
            manifest["stages"] = _merged_stages(manifest_path, manifest["stages"], ran)
            manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")

    manifest["stages"] = _merged_stages(manifest_path, manifest["stages"], ran)
    trained = set(plan) <= {name for name, entry in manifest["stages"].items() if entry.get("done")}
    if "pack" in (args.only or []) or (trained and not args.only):
        packed = store_half_precision(out)
        earlier = manifest.get("pack", {})  # what earlier runs halved (later stages may add files)
        manifest["pack"] = {key: earlier.get(key, 0) + value for key, value in packed.items()}
        print(f"[pack] {packed}")
    if not args.only or "check" in args.only:
        manifest["check"] = check_bundle(out, data)
        print(f"[check] the explorer answered: {manifest['check']['answer']!r}")
    if not args.only or "evaluate" in args.only:
        evaluation_started = time.perf_counter()
        manifest["evaluation"] = evaluate_bundle(out, data, args.size)
        manifest["evaluation"]["seconds"] = round(time.perf_counter() - evaluation_started, 1)
    their_manifest = json.loads(Path(args.compare).read_text()) if args.compare else None
    if args.compare:
        theirs = their_manifest.get("evaluation")
        if not theirs or "evaluation" not in manifest:
            print(f"[compare] nothing to compare: {'this bundle' if theirs else args.compare} has no evaluation "
                  "(run with --only evaluate)")  # fmt: skip
        else:
            print(f"[compare] this bundle vs {args.compare}:")
            print("\n".join("  " + line for line in compare_evaluations(manifest["evaluation"], theirs)))
    records = file_records(out)
    if args.compare:
        print(f"[compare] this bundle's files vs {args.compare}:")
        print("\n".join("  " + line for line in compare_files(records, their_manifest.get("files", {}))))
    if args.only:
        # a partial run (e.g. `--only evaluate` on the committed bundle, whose intermediates are left out of
        # git) keeps the earlier records of files that are not on disk; a full run records what it built
        records = {**{name: r for name, r in manifest.get("files", {}).items() if name not in records}, **records}
        records = dict(sorted(records.items()))
    manifest["files"] = records
    manifest["total_bytes"] = sum(f["bytes"] for f in manifest["files"].values())
    seconds = round(time.perf_counter() - started, 1)
    if partial:
        manifest["last_partial_run"]["seconds"] = seconds
    else:
        manifest["seconds_this_run"] = seconds
    with _locked(out):  # keep the stages that parallel stage processes recorded meanwhile
        manifest["stages"] = _merged_stages(manifest_path, manifest["stages"], ran)
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"bundle at {out}: {manifest['total_bytes'] / 1e6:.1f} MB in {len(manifest['files'])} files")
    return 0


if __name__ == "__main__":
    run_main(main)
