"""Soak: several users drive the running app through its HTTP API for minutes; latency, errors and memory growth.

    python -m neurochat.bench soak --users 8 --minutes 10 [--url URL [--pid PID]] [--weights DIR --nsd-root DIR]
                                   [--seed 0] [--json PATH]

Without --url it starts `python app.py --port P --device cpu` itself (as the browser test does) and
waits until the page answers. Each user is one `gradio_client.Client` (one browser tab) in its own
thread, calling the endpoints of docs/app_api.md in a loop:
  a trial: /select_trial or /random_trial, and every UPLOAD_EVERY-th loop /upload of a NIfTI written
           from a real trial of the data; then /chat (a description or the reconstruction prompt),
           now and then /clear_chat; β changes: /reconstruct at varying β and seed; /localize of a
           concept the trial shows and /ablate of it.
After each request a user looks at the result for --think seconds on average (drawn from 0.5–1.5×
that), as a person at the page does; with --think 0 users never pause, the app's queues stay full,
and a request waits for about one job of every other user (the latencies grow with --users).
Warm-up first: every user runs one loop that calls every endpoint once (not timed). Then the server's
resident memory (VmRSS of its process) is read as rss_mb_start, and the users loop for --minutes.
Reported: requests and errors (an exception, or a status that starts with ⚠️; the first few texts
are kept in first_errors), p50 and p95 seconds per endpoint as a user waits for it (queue included:
the app runs one model job at a time, and one β change beside it), the server's RSS after warm-up, at the end and its peak, and
(when the soak started the server) the size of the server's temp folder (Gradio's cache of uploads
and outputs, the app's downloads). With --url, RSS needs --pid PID of the server (else null).
A benchmark: missed targets print OVER and still exit 0; it fails only when it cannot run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path

from neurochat.bench.server import AppServer
from neurochat.cli import add_dataset_options, write_json

# Targets for the demo preset with 8 users on 2 CPU cores. A β change is /reconstruct.
TARGETS = {"errors": 0, "p95_reconstruct_s": 3.0, "rss_growth": 0.10}
UPLOAD_EVERY = 5  # loops per user between uploads: a person brings their own volume now and then
CLEAR_EVERY = 3  # loops per user between "new conversation" clicks
BETA_CHANGES = 3  # /reconstruct calls per loop: a person moves the slider a few times per trial
KEEP_ERRORS = 5  # error texts kept in the JSON, enough to diagnose without flooding it
SAMPLE_S = 15.0  # how often the server's RSS is read during the soak
DEFAULT_THINK_S = 5.0  # reading an answer, looking at a picture: a person at a talk takes longer
ERROR_PAUSE_S = 0.5  # after a failed request: a dead server must not turn the loop into a busy spin
ENDPOINTS = ("select_trial", "random_trial", "upload", "chat", "clear_chat", "reconstruct", "localize", "ablate")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dataset_options(parser, max_session=False)
    parser.add_argument("--users", type=int, default=8, help="simultaneous users, one client each (default: 8)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long the users loop after warm-up (default: 10)")
    parser.add_argument("--url", help="a running app to drive (default: start `python app.py` on a free port)")
    parser.add_argument("--pid", type=int, help="with --url: the server's process id, to read its memory")
    parser.add_argument("--think", type=float, default=DEFAULT_THINK_S,
                        help=f"seconds a user looks at a result before the next action, on average (default: "
                             f"{DEFAULT_THINK_S:g}; 0: never pauses)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the users' random choices (default: 0)")
    parser.add_argument("--json", metavar="PATH", help="also write the numbers to this JSON file")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from neurochat.errors import ConfigError
    from neurochat.paths import ensure_simnsd

    if args.users < 1 or args.minutes <= 0 or args.think < 0:
        raise ConfigError(f"--users {args.users} --minutes {args.minutes} --think {args.think}: give at least one "
                          "user, a positive time and a pause of 0 or more seconds")  # fmt: skip
    if args.pid is not None and not args.url:
        raise ConfigError(f"--pid {args.pid} names the server of --url; without --url the soak starts its own")
    if args.nsd_root:
        nsd_root = Path(args.nsd_root)
    elif args.preset == "demo":
        nsd_root = ensure_simnsd("demo")  # the data the app itself reads by default
    else:
        raise ConfigError("the paper preset needs --nsd-root DIR (the NSD tree the app reads)")

    with tempfile.TemporaryDirectory(prefix="neurochat-soak-") as scratch:
        scratch = Path(scratch)
        volume = _write_trial_volume(nsd_root, scratch / "trial.nii.gz")
        server = None if args.url else AppServer.start(args, scratch / "server", name="soak")
        try:
            url = args.url or server.url
            pid = args.pid if args.url else server.process.pid
            report = _soak(url, pid, volume, args, scratch / "clients", server)
        finally:
            if server is not None:
                server.stop()

    latencies = report.pop("latencies")
    numbers = {
        "users": args.users, "minutes": args.minutes, "think_s": args.think, "url": args.url, **report,
        "p50_s": {name: round(float(np.percentile(v, 50)), 3) for name, v in latencies.items() if v},
        "p95_s": {name: round(float(np.percentile(v, 95)), 3) for name, v in latencies.items() if v},
        "counts": {name: len(v) for name, v in latencies.items()},
    }  # fmt: skip
    start, end = numbers["rss_mb_start"], numbers["rss_mb_end"]
    numbers["rss_growth"] = round(end / start - 1, 4) if start and end else None
    _print(numbers)
    if args.json:
        write_json(args.json, numbers)
    return 0


# -- the users ---------------------------------------------------------------------------------------


def _soak(url: str, pid: int | None, volume: Path, args, downloads: Path, server) -> dict:
    """Warm-up, then every user loops until the time is up; the counters, latencies and memory readings."""
    from gradio_client import Client

    from neurochat.errors import ConfigError

    tally = _Tally()
    try:
        clients = [Client(url, verbose=False, download_files=str(downloads / f"user{i}")) for i in range(args.users)]
    except Exception as error:  # noqa: BLE001 — any failure to connect means the soak cannot run
        raise ConfigError(f"could not connect to the app at {url} ({error.__class__.__name__}: {error}); "
                          "is it running (`python app.py`)? Or leave out --url to let the soak start one") from error
    users = [_User(client, i, args.seed, volume, tally, args.think) for i, client in enumerate(clients)]

    # 1. Warm-up: every endpoint once per user, all users at once (the first calls load caches and fit maps)
    started = time.perf_counter()
    _in_threads([user.warm_up for user in users])
    warmup_s = time.perf_counter() - started
    rss_start, disk_start = _rss_mb(pid), server.disk() if server else None
    load_start = os.getloadavg()[0]  # other work on the machine slows every request: say how busy it was

    # 2. The soak: the users loop until the deadline while the server's memory is sampled
    stop = threading.Event()
    tally.started = time.monotonic()
    deadline = tally.started + 60 * args.minutes
    samples = []
    sampler = threading.Thread(target=_sample, args=(pid, stop, samples, server, tally.started), daemon=True)
    sampler.start()
    _in_threads([lambda user=user: user.loop(deadline, stop) for user in users])
    stop.set()
    sampler.join()
    rss_end, disk_end = _rss_mb(pid), server.disk() if server else None
    peak = max([mb for _, mb in samples if mb is not None] + [rss_start or 0, rss_end or 0]) or None
    return {
        "requests": tally.requests, "errors": tally.errors, "first_errors": tally.first_errors,
        "latencies": tally.latencies, "warmup_s": round(warmup_s, 1),
        "rss_mb_start": rss_start, "rss_mb_end": rss_end, "rss_mb_peak": peak,
        "rss_mb_samples": [[round(t), mb] for t, mb in samples],
        "server_tmp_mb_start": disk_start and disk_start[0], "server_tmp_mb_end": disk_end and disk_end[0],
        "server_tmp_files_start": disk_start and disk_start[1], "server_tmp_files_end": disk_end and disk_end[1],
        "server_tmp_mb_by_folder_end": disk_end and disk_end[2],
        "server_exited": bool(server and server.process.poll() is not None),
        "load_avg_1min_start": round(load_start, 2), "load_avg_1min_end": round(os.getloadavg()[0], 2),
    }  # fmt: skip


class _Tally:
    """Counters shared by the users' threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.started = None  # when the soak began (after warm-up): errors say when they happened
        self.requests, self.errors = 0, 0
        self.first_errors: list[str] = []
        self.latencies: dict[str, list[float]] = {name: [] for name in ENDPOINTS}

    def record(self, endpoint: str, seconds: float, timed: bool, error: str | None) -> None:
        with self.lock:
            self.requests += 1
            if error is not None:
                self.errors += 1
                if len(self.first_errors) < KEEP_ERRORS:  # when it happened, to compare with the RSS samples
                    when = f"{time.monotonic() - self.started:.0f} s into the soak" if timed else "warm-up"
                    self.first_errors.append(f"/{endpoint} ({when}): {error}")
            elif timed:
                self.latencies[endpoint].append(seconds)


class _User:
    """One browser tab: its own client (trial, conversation, removed concepts) and its own random choices."""

    def __init__(self, client, index: int, seed: int, volume: Path, tally: _Tally, think_s: float = 0.0):
        import numpy as np

        from neurochat.language import BRIEF_INSTRUCTIONS, RECONSTRUCTION_INSTRUCTION

        self.client, self.index, self.volume, self.tally, self.think_s = client, index, volume, tally, think_s
        self.rng = np.random.default_rng([seed, index])
        self.messages = (BRIEF_INSTRUCTIONS[0], RECONSTRUCTION_INSTRUCTION)  # the page's Describe and Reconstruct
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        self.labels = {name: [out["label"] for out in api[f"/{name}"]["returns"]] for name in ENDPOINTS}
        select = {p["parameter_name"]: p for p in api["/select_trial"]["parameters"]}
        # the choices the page offers: every subject, and the default subject's trials (its dropdown)
        self.subjects = list(select["subject"]["type"]["enum"])
        self.trials = [str(choice) for choice in select["nsd_id"]["type"]["enum"]]
        self.concept = ""  # the concept localized last: the fallback when a trial names none
        self.last: dict = {}  # the outputs of the trial opened last (its caption names concepts)
        self.timed, self.loops, self.uploads = False, 0, 0

    def warm_up(self) -> None:
        """Every endpoint once: a trial by each route, an upload, then the loop's actions."""
        self._call("random_trial", self._pick(self.subjects), "averaged")
        self._call("upload", self._file(), 0)
        self._call("select_trial", self.subjects[0], self._pick(self.trials), "averaged")
        self._actions(self.messages[1], clear=True)
        self.timed = True

    def loop(self, deadline: float, stop: threading.Event) -> None:
        while time.monotonic() < deadline and not stop.is_set():
            self.loops += 1
            if self.loops % UPLOAD_EVERY == 0:
                self._call("upload", self._file(), 0)
            elif self.rng.random() < 0.5:
                self._call("select_trial", self.subjects[0], self._pick(self.trials), self._pick(["averaged", "single"]))
            else:
                self._call("random_trial", self._pick(self.subjects), self._pick(["averaged", "single"]))
            self._actions(self._pick(self.messages), clear=self.loops % CLEAR_EVERY == 0, deadline=deadline)

    def _actions(self, message: str, clear: bool, deadline: float = float("inf")) -> None:
        """On the trial just opened: chat, β changes, localize and ablate a concept it shows."""
        caption = self.last.get("caption", "")
        turn = self._call("chat", message, self._beta(), self._seed(), 0.5)
        if clear:
            self._call("clear_chat")
        for _ in range(BETA_CHANGES):
            if time.monotonic() >= deadline:
                return
            self._call("reconstruct", self._beta(), self._seed())
        concept = self._concept(caption, turn.get("Concepts · untick to remove"))
        self._call("localize", concept, 0.5)
        self._call("ablate", concept, self._beta(), self._seed())

    def _call(self, endpoint: str, *inputs) -> dict:
        """One request, timed as the user waits for it; its outputs by label ({} when it failed)."""
        started = time.perf_counter()
        error, outputs = None, {}
        try:
            result = self.client.predict(*inputs, api_name=f"/{endpoint}")
            result = result if isinstance(result, tuple) else (result,)
            outputs = dict(zip(self.labels[endpoint], result))
            status = _text(outputs.get("status"))
            if status.startswith("⚠️"):  # the app caught it and said why: still a failed request
                error = status
        except Exception as exception:  # noqa: BLE001 — any failure is counted and kept as text
            # gradio_client's CancelledError has no text: it means the event stream closed before the result
            error = f"{exception.__class__.__name__}: {exception or 'no message'}"
        self.tally.record(endpoint, time.perf_counter() - started, self.timed, error)
        if error is not None:
            time.sleep(ERROR_PAUSE_S)
        elif self.timed and self.think_s > 0:
            time.sleep(self.think_s * self.rng.uniform(0.5, 1.5))  # looking at the result
        if endpoint in ("select_trial", "random_trial", "upload"):
            self.last = outputs
        return outputs

    def _concept(self, caption, chips) -> str:
        """A concept worth locating: one the caption names, else one the answer named, else the last one."""
        from neurochat.vocabulary import mentions

        named = mentions(_text(caption))
        if not named and isinstance(chips, dict):
            named = [choice[0] if isinstance(choice, (list, tuple)) else choice for choice in chips.get("choices", [])]
        if named:
            self.concept = str(self._pick(named))
        return self.concept or "person"

    def _file(self):
        """A new file each time, as every lab's is: the real trial scaled by a random factor (not timed)."""
        import nibabel as nib
        from gradio_client import handle_file

        self.uploads += 1
        image = nib.load(self.volume)
        scaled = image.get_fdata(dtype="float32") * self.rng.uniform(0.9, 1.1)
        path = self.volume.with_name(f"user{self.index}-upload{self.uploads}.nii.gz")
        nib.save(nib.Nifti1Image(scaled, image.affine), path)
        return handle_file(str(path))

    def _pick(self, options):
        return options[int(self.rng.integers(len(options)))]

    def _beta(self) -> float:
        # 0.30 … 1.00 in the demo slider's steps of 1/10 (another preset's app snaps them to its own steps)
        return round(float(self.rng.integers(3, 11)) / 10, 2)

    def _seed(self) -> int:
        return int(self.rng.integers(4))


def _text(output) -> str:
    """An output's text: a plain value, or the value inside an update (an update with no value is "")."""
    if isinstance(output, dict):
        return str(output.get("value") or "")
    return "" if output is None else str(output)


def _in_threads(functions) -> None:
    threads = [threading.Thread(target=function, daemon=True) for function in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# -- the server and its memory -----------------------------------------------------------------------


def _rss_mb(pid: int | None) -> float | None:
    """Resident memory of process `pid` in MB (VmRSS), or None when unknown or gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)  # the kernel reports kB
    except OSError:
        return None
    return None


def _sample(pid: int | None, stop: threading.Event, samples: list, server, started: float) -> None:
    """Read the server's RSS every SAMPLE_S until stopped (seconds since `started`); stop the users if the
    server died."""
    while not stop.wait(SAMPLE_S):
        samples.append((time.monotonic() - started, _rss_mb(pid)))
        if server is not None and server.process.poll() is not None:
            stop.set()  # every further request would fail: the errors so far say enough


def _write_trial_volume(nsd_root: Path, path: Path) -> Path:
    """A real trial's beta map as a float NIfTI (percent signal change), as a lab would upload it."""
    import nibabel as nib

    from neurochat.nsd import NSDDataset

    dataset = NSDDataset(nsd_root)
    subject = dataset.subjects[0]
    trial = int(dataset.trials(subject).trial[0])
    nib.save(nib.Nifti1Image(dataset.read_trial(subject, trial), dataset.affine(subject)), path)
    return path


# -- the report ------------------------------------------------------------------------------------


def _print(numbers: dict) -> None:
    def verdict(number, target, shown: str) -> str:
        if number is None:
            return "(unknown)"
        return f"target ≤ {shown} ({'ok' if number <= target else 'OVER'}, demo, 8 users on 2 CPU cores)"

    print(f"soak: {numbers['users']} users for {numbers['minutes']:g} min, {numbers['requests']} requests "
          f"(warm-up {numbers['warmup_s']:.0f} s), load average {numbers['load_avg_1min_start']:.1f} after warm-up, "
          f"{numbers['load_avg_1min_end']:.1f} at the end on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"  errors {numbers['errors']:>30}   {verdict(numbers['errors'], TARGETS['errors'], '0')}")
    for error in numbers["first_errors"]:
        print(f"    {error[:300]}")
    print(f"  {'seconds':<16} {'p50':>7} {'p95':>7} {'count':>6}")
    for name in ENDPOINTS:
        if name not in numbers["p50_s"]:
            continue
        p50, p95, count = numbers["p50_s"][name], numbers["p95_s"][name], numbers["counts"][name]
        target = TARGETS["p95_reconstruct_s"]
        note = f"   p95 of a β change: {verdict(p95, target, f'{target:g} s')}" if name == "reconstruct" else ""
        print(f"  {name:<16} {p50:7.2f} {p95:7.2f} {count:6d}{note}")
    start, end, growth = numbers["rss_mb_start"], numbers["rss_mb_end"], numbers["rss_growth"]
    if start is None:
        print("  server RSS unknown (with --url, give --pid PID of the server)")
    else:
        print(f"  server RSS {start:.0f} MB after warm-up, {end or float('nan'):.0f} MB at the end "
              f"(peak {numbers['rss_mb_peak']:.0f} MB)")  # fmt: skip
        shown = "unknown" if growth is None else f"{growth:+.1%}"
        target = TARGETS["rss_growth"]
        print(f"  rss_growth {shown:>26}   {verdict(growth, target, f'{target:.0%}')}")
    if numbers["server_tmp_mb_start"] is not None:
        print(f"  server temp folder {numbers['server_tmp_mb_start']:.1f} MB, {numbers['server_tmp_files_start']} files "
              f"after warm-up; {numbers['server_tmp_mb_end']:.1f} MB, {numbers['server_tmp_files_end']} files "
              f"at the end {numbers['server_tmp_mb_by_folder_end']}")  # fmt: skip
    if numbers["server_exited"]:
        print("  the server exited during the soak: see first_errors and its log")
