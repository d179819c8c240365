"""Small helpers shared by the `python -m neurochat.*` command lines."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from neurochat.errors import NeuroChatError
from neurochat.presets import PRESETS


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


# -- the options every command that reads models or data shares: one name and one help text each --


def add_dataset_options(parser: argparse.ArgumentParser, *, max_session: bool = True, annotations: bool = False) -> None:
    """--preset, --weights and --nsd-root (and --max-session, --annotations): which models and which NSD
    tree a command reads."""
    add_preset_option(parser)
    add_weights_option(parser)
    add_nsd_root_option(parser)
    if max_session:
        add_max_session_option(parser)
    if annotations:
        add_annotations_option(parser)


def add_preset_option(parser: argparse.ArgumentParser, *, default: str = "demo") -> None:
    """--preset: demo (SimNSD, committed models) or paper (NSD, the paper's models); neurochat/presets.py."""
    parser.add_argument("--preset", choices=PRESETS, default=default,
                        help="demo: SimNSD and the small committed models; paper: NSD and the paper's models "
                             "(default: %(default)s)")  # fmt: skip


def add_weights_option(parser: argparse.ArgumentParser) -> None:
    """--weights: the weights root (neurochat/presets.py says which; neurochat/models/bundle.py what is in it)."""
    parser.add_argument("--weights", metavar="DIR",
                        help="weights root: a demo bundle folder (default: checkpoints/demo), or for the paper preset "
                             "the folder laid out as in neurochat/presets.py (or $NEUROCHAT_WEIGHTS)")  # fmt: skip


def add_nsd_root_option(parser: argparse.ArgumentParser, *, required: bool = False, old_names: Sequence[str] = ()) -> None:
    """--nsd-root: the NSD tree a command reads. `old_names` still work, each with a one-line
    deprecation note on stderr, and are left out of --help."""
    default = "" if required else "; default for the demo preset: the cached SimNSD demo, generated if needed"
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--nsd-root", metavar="DIR",
                       help=f"the NSD tree to read (nsddata/, nsddata_betas/, nsddata_stimuli/) or a SimNSD tree{default}")  # fmt: skip
    for old_name in old_names:
        group.add_argument(old_name, dest="nsd_root", metavar="DIR", action=_Renamed, new_name="--nsd-root",
                           help=argparse.SUPPRESS)  # fmt: skip


def add_max_session_option(parser: argparse.ArgumentParser) -> None:
    """--max-session: read sessions up to N only."""
    parser.add_argument("--max-session", type=int, metavar="N", help="ignore later sessions (37: the classic split)")


def add_annotations_option(parser: argparse.ArgumentParser) -> None:
    """--annotations: COCO-format captions and instances outside the NSD tree."""
    parser.add_argument("--annotations", metavar="DIR",
                        help="folder of COCO-format captions_*.json and instances_*.json (COCO 2017, or re-annotations "
                             "in that format); default: NSD_ROOT/annotations")  # fmt: skip


class _Renamed(argparse.Action):
    """An old option name that still works, with a one-line note on stderr that names the new one."""

    def __init__(self, option_strings, dest, new_name: str, **kwargs):
        self.new_name = new_name
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"{parser.prog}: {option_string} is deprecated, use {self.new_name} (same meaning)", file=sys.stderr)
        setattr(namespace, self.dest, values)
