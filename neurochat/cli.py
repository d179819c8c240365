"""Small helpers shared by the `python -m neurochat.*` command lines."""

from __future__ import annotations

import json
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
