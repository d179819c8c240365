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
  encoding_maps  each SimNSD subject's encoding-model statistics, fitted on the packed extractors, so
              that the app's first concept map in a subject is instant (train/encoding_maps.py)
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

from neurochat.cli import add_nsd_root_option, run_main

from train.bundle_evaluation import compare_evaluations, compare_files, evaluate_bundle
from train.bundle_plan import run_in_parallel, stage_commands
from train.encoding_maps import write_encoding_maps

from neurochat.models.bundle import MANIFEST
LOCK = ".manifest.lock"  # held while a process updates the manifest
LOGS = "logs"  # --jobs: one log per stage process (not part of the bundle)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.demo_bundle", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="bundle folder (checkpoints/demo for the committed demo)")
    parser.add_argument("--size", choices=("demo", "micro"), default="demo")
    add_nsd_root_option(parser, old_names=("--data",))  # the SimNSD tree to train on (default: the cached one of this size)
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

    from neurochat.paths import ensure_simnsd, simnsd_version
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
    data = Path(args.nsd_root) if args.nsd_root else ensure_simnsd("small" if args.size == "micro" else "demo")
    manifest["data"] = _portable(str(data))
    manifest["simnsd_version"] = simnsd_version(data)  # the models are for brains that respond by its rules
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
        base_argv = ["--out", str(out), "--size", args.size, "--nsd-root", str(data), "--threads", str(threads),
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
    if "encoding_maps" in (args.only or []) or (trained and not args.only):
        manifest["encoding_maps"] = write_encoding_maps(out, data)  # on the packed weights the app reads
        print(f"[encoding_maps] {manifest['encoding_maps']}")
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
