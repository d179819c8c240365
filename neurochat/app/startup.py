"""Starting the explorer: load the models, warm the first trial, serve the page (or a page that says why not).

`app.py` parses the command line and calls `serve(args, command)`; nothing here reads argv.
"""

from __future__ import annotations

import argparse
import atexit
import ctypes
import logging
import shutil
import sys
import threading
import time

from neurochat import viz
from neurochat.app.ui import CSS, THEME, ExplorerUI, error_page
from neurochat.errors import ConfigError, NeuroChatError
from neurochat.paths import ensure_simnsd

log = logging.getLogger("neurochat.app")


def load_explorer(args: argparse.Namespace, log_line=print):
    """(explorer, None) or (None, the sentence that says what is missing and where)."""
    import torch

    from neurochat.explorer import Explorer

    if args.device == "cuda" and not torch.cuda.is_available():
        return None, "--device cuda was asked for, but torch sees no CUDA GPU on this machine: use --device cpu"
    try:
        nsd_root = args.nsd_root
        if nsd_root is None and args.preset == "demo":
            nsd_root = ensure_simnsd("demo", args.seed)  # generated once into the cache (about a minute)
        started = time.perf_counter()
        log_line(f"loading the {args.preset} models from {args.weights or 'the committed checkpoints'} …")
        explorer = Explorer.load(args.preset, nsd_root=nsd_root, weights=args.weights, device=args.device,
                                 log=log_line, quantization=getattr(args, "quantize", None),
                                 offload=getattr(args, "offload", False), annotations=getattr(args, "annotations", None))  # fmt: skip
        log_line(f"models ready in {time.perf_counter() - started:.1f} s")
        return explorer, None
    except NeuroChatError as error:
        return None, str(error)
    except (OSError, ValueError, RuntimeError, KeyError) as error:  # a damaged or foreign weights folder
        log.error("could not load the models", exc_info=error)
        return None, f"the models could not be loaded ({error.__class__.__name__}: {error})"


def warm_up(ui: ExplorerUI) -> None:
    """First trial's features and the figure libraries, so the first clicks are fast."""
    ui.explorer.select(ui.default_subject, ui.default_trial)
    ui.explorer.prepare_localization(ui.default_subject)

    def figures():
        try:
            viz.warm_up()
        except Exception as error:  # noqa: BLE001 — only a speed-up
            log.warning("figure warm-up failed: %s", error)

    threading.Thread(target=figures, daemon=True, name="viz-warm-up").start()


# Torch's intra-op threads for the models on a CPU. Gradio runs the handlers in its worker threads, and
# there PyTorch's OpenMP team of two threads made a reconstruction about 2x slower than one thread on
# 2 CPU cores (in the main thread two are a little faster than one): `python -m neurochat.bench app
# --threads 2` against the default.
CPU_THREADS = 1


def set_model_threads(device: str | None, threads: int | None = None) -> int:
    """Set torch's intra-op threads before the models load (`threads`, else CPU_THREADS on a CPU); the count."""
    import torch

    on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    if threads is None and on_cpu:
        threads = CPU_THREADS
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads {threads}: give 1 or more torch threads")
        torch.set_num_threads(threads)  # threads started later (Gradio's workers) inherit it
    return torch.get_num_threads()


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Let glibc keep at most `count` memory arenas; True where it took effect.

    glibc gives threads that allocate at once arenas of their own, and keeps what they free in them:
    with Gradio's worker threads the server's memory grew about 3x faster than its caches did
    (`python -m neurochat.bench soak`; 8 threads +426 MB against +95 MB held, MALLOC_ARENA_MAX=2
    +182 MB). Other C libraries (macOS, musl) are left as they are.
    """
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(_M_ARENA_MAX, count))
    except (OSError, AttributeError):
        return False


TRIM_EVERY_S = 10.0


def return_freed_memory(every_s: float = TRIM_EVERY_S) -> bool:
    """Every `every_s` seconds, hand the heap's freed pages back to the system (glibc's malloc_trim); True
    where it runs. Each picture, figure and chat turn allocates and frees a few MB; glibc keeps the freed
    pages in its arenas, and the server's resident memory crept up long after its caches were full
    (`python -m neurochat.bench soak`)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False

    def keep_trimming():
        while True:
            time.sleep(every_s)
            trim(0)

    threading.Thread(target=keep_trimming, daemon=True, name="malloc-trim").start()
    return True


def serve(args: argparse.Namespace, command: str) -> int:
    """Load the models and serve the explorer until stopped; `command` is how to start it again."""
    limit_malloc_arenas()  # before the model loading and Gradio's threads allocate
    return_freed_memory()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for chatty in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    set_model_threads(args.device, getattr(args, "threads", None))
    explorer, problem = load_explorer(args)
    if explorer is None:
        print(f"error: {problem}", file=sys.stderr)
        blocks = error_page(problem, command)
    else:
        ui = ExplorerUI(explorer)
        atexit.register(shutil.rmtree, ui.downloads, ignore_errors=True)
        blocks = ui.build()
        warm_up(ui)
    blocks.queue(default_concurrency_limit=1)
    print(f"NeuroChat on http://{args.host}:{args.port}", flush=True)
    blocks.launch(server_name=args.host, server_port=args.port, theme=THEME,
                  css=CSS, ssr_mode=False, footer_links=[], show_error=False, quiet=True)  # fmt: skip
    return 0
