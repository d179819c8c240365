"""NeuroChat — talk with a brain recording (the Gradio explorer).

    python app.py                                    # demo preset: SimNSD generated on first run, committed weights
    python app.py --port 7861 --host 0.0.0.0         # serve on the network (e.g. a talk's laptop)
    python app.py --weights /tmp/micro --nsd-root .cache/simnsd-small-seed0   # any weights bundle and NSD tree
    python app.py --preset paper --nsd-root /data/nsd --weights /data/weights --device cuda
    python app.py --preset paper ... --quantize 4bit --annotations /data/coco/annotations   # LLM in 4-bit (bitsandbytes)
    python app.py --info [--json]                    # only prepare the demo data and summarise it

This file only reads the command line; the explorer itself is the package `neurochat/app/` (see its
`__init__`). Gradio and torch are imported after the arguments are read, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from neurochat.cli import add_dataset_options, run_main
from neurochat.paths import ensure_simnsd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python app.py", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add_dataset_options(parser, max_session=False, annotations=True)  # the explorer reads every session on disk
    parser.add_argument("--quantize", choices=("8bit", "4bit"),
                        help="load the LLM quantized through bitsandbytes (CUDA only; default: bf16 on a GPU)")  # fmt: skip
    parser.add_argument("--offload", action="store_true",
                        help="keep model parts in CPU memory until they run (GPUs smaller than the app needs)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--host", default="127.0.0.1", help="interface to serve on (0.0.0.0 for the network)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    parser.add_argument("--threads", type=int,
                        help="torch threads for the models (default on a CPU: 1, fastest in Gradio's worker threads)")
    parser.add_argument("--seed", type=int, default=0, help="SimNSD seed of the demo data")
    parser.add_argument("--info", action="store_true", help="only prepare the demo data and print its summary")
    parser.add_argument("--json", action="store_true", help="with --info: print the summary as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.info or args.json:
        from neurochat.nsd import NSDDataset
        from neurochat.nsd.__main__ import _format_info

        summary = NSDDataset(args.nsd_root or ensure_simnsd("demo", args.seed)).summary()
        print(json.dumps(summary, indent=2) if args.json else _format_info(summary))
        return 0

    from neurochat.app.startup import serve

    return serve(args, "python " + " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]))


if __name__ == "__main__":
    run_main(main)
