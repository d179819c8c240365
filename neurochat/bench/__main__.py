"""Command line for the benchmarks: `python -m neurochat.bench <name> [options]`.

To add a benchmark, write `neurochat/bench/<name>.py` with a module docstring (its first line is
the help text), `add_arguments(parser)` and `run(args) -> int`, and list it in `BENCHMARKS`.
Keep heavy imports (transformers, diffusers) inside `run` so that `--help` and the other
benchmarks stay fast.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Sequence

from neurochat.cli import add_verbosity_options, configure_logging, run_main

# name → module under neurochat.bench
BENCHMARKS = {
    "preprocess": "neurochat.bench.preprocess",
    "extractor": "neurochat.bench.extractor",
    "chat": "neurochat.bench.chat",
    "recon": "neurochat.bench.recon",
    "localize": "neurochat.bench.localize",
    "app": "neurochat.bench.app",
    "soak": "neurochat.bench.soak",
    "training": "neurochat.bench.training",
    "precision": "neurochat.bench.precision",
    "memory": "neurochat.bench.memory",
    "gpu_check": "neurochat.bench.gpu_check",
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m neurochat.bench", description=__doc__.splitlines()[0])
    add_verbosity_options(parser)
    subparsers = parser.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module_name in BENCHMARKS.items():
        module = importlib.import_module(module_name)
        summary = (module.__doc__ or name).strip().splitlines()[0]
        subparser = subparsers.add_parser(name, help=summary, description=module.__doc__,
                                          formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(subparser)
        subparser.set_defaults(run=module.run)
    args = parser.parse_args(argv)
    configure_logging(args)
    return args.run(args)


if __name__ == "__main__":
    run_main(main)
