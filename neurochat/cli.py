"""Small helpers shared by the `python -m neurochat.*` command lines."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from neurochat.errors import NeuroChatError


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> None:
    """Run a command's `main`, turning NeuroChat errors into a one-paragraph message and exit code 2.

    Users get the sentence that says what is wrong and what to do, never a traceback from deep
    inside a library.
    """
    try:
        code = main(argv)
    except NeuroChatError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code or 0)


def write_json(path: str | Path, payload: Any) -> None:
    """Write `payload` as indented JSON, creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")


def add_verbosity_options(parser: argparse.ArgumentParser) -> None:
    """--quiet (warnings and errors only) and --verbose (debug messages too) for a chatty command."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true", help="print only warnings and errors")
    group.add_argument("--verbose", action="store_true", help="print debug messages too")


def configure_logging(args: argparse.Namespace) -> None:
    """Show the library's `logging` messages on stderr, one plain line each, at the level that
    --quiet / --verbose chose (info by default). Other libraries stay at warnings."""
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    for name in ("neurochat", "train"):
        logging.getLogger(name).setLevel(level)
