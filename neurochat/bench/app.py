"""App responsiveness: cold start, β re-render, localize, ablate and first chat token, through the explorer.

    python -m neurochat.bench app [--weights DIR] [--nsd-root DIR] [--runs 5] [--browser] [--json PATH]

What a person waits for in the browser, measured on the explorer the app talks to (no browser), each step
run in a worker thread with the app's torch threads, as the app's handlers run (`--threads N` to compare):
  cold_start_s   a fresh Python process: import, `Explorer.load` and the first `select` (the data is
                 already in the cache; the demo's SimNSD generation on a fresh clone is not counted)
  beta_s         `reconstruct` at a β not seen before (features cached: only the diffusion runs)
  first_localize_s  the first `localize` in a subject on a machine that never fitted it (an empty
                 disk cache): the encoding-model statistics come from the bundle (the demo ships its
                 SimNSD subjects': neurochat/encoding.py)
  fit_s          the same where the bundle has none (real NSD): every extractor runs over the
                 subject's training trials. The app starts this fit in the background as soon as a
                 subject is opened, and keeps it on disk, so a person waits for it only when asking
                 right away, and once per machine
  localize_s     `localize` of a concept not seen before in this trial (ensemble encoding map)
  ablate_s       `ablate` of a localized concept (zero its voxels, encode again, ask the LLM for the
                 prompt again, reconstruct), each run a different concept
  first_token_s  from `chat` to the first streamed piece of a brief description
  peak_rss_mb    this process's peak resident memory after all of the above
With --browser, the same app is started (`python app.py`) and driven in headless Chromium
(`neurochat/bench/browser.py`), from the change made in the page to the new picture shown:
  browser_beta_s    a β typed into the slider's box (what a drag's end sends), a β not rendered before
  browser_ablate_s  a located concept's chip unticked: the ablated picture shown
The median (p50) of `--runs` runs is reported, after one untimed warm-up of each step. Targets for
the demo preset on 2 CPU cores are printed beside the numbers.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from neurochat.cli import add_dataset_options, write_json

# What a person should wait at most, demo preset on 2 CPU cores. fit_s has none: a once-per-subject-and-machine
# wait where the bundle ships no statistics, reported.
TARGETS = {"cold_start_s": 20.0, "beta_s": 1.5, "first_localize_s": 5.0, "localize_s": 1.0, "ablate_s": 2.0,
           "first_token_s": 0.5, "peak_rss_mb": 3000.0, "browser_beta_s": 1.5, "browser_ablate_s": 2.0}  # fmt: skip
BRIEF = "Describe the image concisely."  # Table 3's first instruction

_WORKER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-app-handler")
_COLD_START = """
import json, sys, time
started = time.perf_counter()
from neurochat.explorer import Explorer
preset, nsd_root, weights, device = sys.argv[1:5]
explorer = Explorer.load(preset, nsd_root=nsd_root, weights=weights or None, device=device or None, log=lambda *_: None)
subject = explorer.subjects[0]
explorer.select(subject, explorer.trial_choices(subject)[0].nsd_id)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_options(parser, max_session=False)
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per step; the median is reported (default: 5)")
    parser.add_argument("--cold-runs", type=int, default=1,
                        help="fresh processes timed for the cold start (default: 1)")
    parser.add_argument("--threads", type=int,
                        help="torch intra-op threads, here and in the app of --browser (default: the app's)")
    parser.add_argument("--browser", action="store_true",
                        help="also time a β change and an ablation in headless Chromium on the running app "
                             "(needs playwright and /usr/bin/chromium)")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def run(args: argparse.Namespace) -> int:
    from neurochat.app.startup import set_model_threads
    from neurochat.errors import ConfigError
    from neurochat.explorer import Explorer
    from neurochat.paths import ensure_simnsd

    if args.runs < 1 or args.cold_runs < 1:
        raise ConfigError(f"--runs {args.runs} --cold-runs {args.cold_runs}: give at least one run of each")
    threads = set_model_threads(args.device, args.threads)

    # 1. Data in the cache first: the cold start times loading, not the one-off SimNSD generation
    if args.nsd_root:
        nsd_root = Path(args.nsd_root)
    elif args.preset == "demo":
        nsd_root = ensure_simnsd("demo")
    else:
        raise ConfigError("the paper preset needs --nsd-root DIR")

    if args.browser:
        from neurochat.bench.browser import check_browser

        check_browser()  # before minutes of timings, not after

    # 2. Cold start: a fresh process imports, loads every model and opens the first trial
    cold = [_cold_start(args, nsd_root, threads) for _ in range(args.cold_runs)]

    # 3. The steps a person waits for, on this process's own explorer
    explorer = Explorer.load(args.preset, nsd_root=nsd_root, weights=args.weights, device=args.device,
                             log=lambda *_: None)  # fmt: skip
    subject = explorer.subjects[0]
    state = explorer.select(subject, explorer.trial_choices(subject)[0].nsd_id)
    state.prompt = explorer.reconstruction_prompt(state)  # as after "Reconstruct" in the chat
    concepts = _concepts(explorer, state, 2 * (args.runs + 1))

    betas = [round(0.93 - 0.01 * i, 2) for i in range(args.runs + 1)]  # a β not rendered before, each run
    beta_s = _p50([_timed(explorer.reconstruct, state, beta=beta) for beta in betas][1:])
    store = explorer.localizer.store
    disk_cache, shipped = store.cache, store.shipped
    with tempfile.TemporaryDirectory() as empty_cache:
        store.cache = Path(empty_cache)  # a machine that never fitted this subject: not a read of an earlier run's fit
        explorer.localizer.forget_statistics()
        first_localize_s = _timed(explorer.localize, state, concepts[0])
        store.shipped = None  # and one whose bundle ships none: the fit
        explorer.localizer.forget_statistics()
        fit_s = _timed(explorer.localizer.has_reference, subject)  # the fit (a map after it takes localize_s)
    store.cache, store.shipped = disk_cache, shipped
    localize_s = _p50([_timed(explorer.localize, state, concept) for concept in concepts[1 : args.runs + 1]])
    ablate_s = _p50([_timed(explorer.ablate, state, [concept]) for concept in concepts[: args.runs + 1]][1:])
    first_token_s = _p50([_first_token(explorer, state) for _ in range(args.runs + 1)][1:])
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    in_browser = _in_browser(args, nsd_root, concepts[: args.runs + 1], explorer.steps) if args.browser else {}

    numbers = {"cold_start_s": _p50(cold), "beta_s": beta_s, "first_localize_s": first_localize_s,
               "fit_s": fit_s, "localize_s": localize_s, "ablate_s": ablate_s,
               "first_token_s": first_token_s, "peak_rss_mb": peak_rss_mb, **in_browser}  # fmt: skip
    device = explorer.reconstructor.device
    print(f"preset {args.preset} on {device}, torch threads {threads}, {args.runs} runs "
          f"(p50), trial {state.label()}")  # fmt: skip
    for name, number in numbers.items():
        target = TARGETS.get(name)
        if target is None:
            print(f"  {name:<16} {number:9.3f}   (no target)")
            continue
        verdict = "ok" if number <= target else "OVER"
        print(f"  {name:<16} {number:9.3f}   target ≤ {target:g} ({verdict}, demo on 2 CPU cores)")
    if args.json:
        write_json(args.json, {name: round(number, 4) for name, number in numbers.items()})
    over = [name for name, number in numbers.items() if name in TARGETS and number > TARGETS[name]]
    print(f"app: cold {numbers['cold_start_s']:.2f} s, β {beta_s:.3f} s, first localize in a subject "
          f"{first_localize_s:.2f} s (fitting it {fit_s:.1f} s), localize {localize_s:.3f} s, "
          f"ablate {ablate_s:.3f} s, first token {first_token_s:.3f} s, peak RSS {peak_rss_mb:.0f} MB"
          + (f" — over target: {', '.join(over)}" if over else " — all within target"))  # fmt: skip
    return 0


def _cold_start(args: argparse.Namespace, nsd_root: Path, threads: int) -> float:
    from neurochat.errors import ConfigError
    from neurochat.paths import REPO_ROOT

    code = f"import torch; torch.set_num_threads({threads})\n" + _COLD_START
    command = [sys.executable, "-c", code, args.preset, str(nsd_root), args.weights or "", args.device or ""]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise ConfigError(f"the cold-start process failed: {done.stderr.strip().splitlines()[-1:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def _in_browser(args: argparse.Namespace, nsd_root: Path, concepts: list[str], steps: int) -> dict[str, float]:
    """β changes and ablations timed in headless Chromium on the app started as a subprocess
    (medians after one untimed warm-up of each)."""
    from neurochat.bench.browser import browser_timings
    from neurochat.bench.server import AppServer

    betas = _slider_betas(steps, args.runs + 1)
    with tempfile.TemporaryDirectory(prefix="neurochat-bench-app-") as scratch:
        app_args = argparse.Namespace(preset=args.preset, weights=args.weights, nsd_root=nsd_root, threads=args.threads)
        server = AppServer.start(app_args, Path(scratch), name="app --browser")
        try:
            seconds = browser_timings(server.url, betas, concepts)
        finally:
            server.stop()
    return {"browser_beta_s": _p50(seconds["beta_s"][1:]), "browser_ablate_s": _p50(seconds["ablate_s"][1:])}


def _slider_betas(steps: int, count: int) -> list[float]:
    """`count` β values the slider has (whole denoising steps), below the default β's: each a picture not drawn before."""
    from neurochat.errors import ConfigError
    from neurochat.reconstruct import DEFAULT_BETA, denoising_steps

    below_default = denoising_steps(DEFAULT_BETA, steps) - 1
    if count > below_default:
        raise ConfigError(f"--runs {count - 1}: the slider has only {below_default} β values below the default; "
                          f"give at most --runs {below_default - 1}")  # fmt: skip
    return [round((below_default - i) / steps, 4) for i in range(count)]


def _concepts(explorer, state, count: int) -> list[str]:
    """Concepts to localize, this picture's own first, each localized once (a cache miss each run)."""
    own = explorer.true_concepts(state) or [box["name"] for box in explorer.dataset.boxes(state.nsd_id)]
    pool = list(dict.fromkeys(own + list(explorer.vocabulary or [])))
    if not pool:
        pool = ["person", "dog", "cat", "car", "tree", "building", "food", "sky", "water", "table", "chair", "bus"]
    return [pool[i % len(pool)] for i in range(count)]


def _in_worker(function, *args, **kwargs):
    """`function`'s result, run in a worker thread: where the app's handlers run (Gradio's threads)."""
    return _WORKER.submit(function, *args, **kwargs).result()


def _timed(function, *args, **kwargs) -> float:
    """Seconds `function` takes in the worker thread."""
    def timed() -> float:
        started = time.perf_counter()
        function(*args, **kwargs)
        return time.perf_counter() - started

    return _in_worker(timed)


def _first_token(explorer, state) -> float:
    """Seconds from `chat` to its first streamed piece, in the worker thread."""
    return _in_worker(_first_token_seconds, explorer, state)


def _first_token_seconds(explorer, state) -> float:
    fresh = dataclasses.replace(state, history=[])  # each run starts the conversation afresh
    started = time.perf_counter()
    turn = explorer.chat(fresh, BRIEF)
    pieces = iter(turn)
    next(pieces, None)
    seconds = time.perf_counter() - started
    for _ in pieces:  # let the generation finish before the next timing
        pass
    return seconds


def _p50(values: list[float]) -> float:
    return float(statistics.median(values))

