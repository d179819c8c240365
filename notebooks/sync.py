"""Write walkthrough.ipynb from walkthrough.py (the `# %%` percent format is the source of truth).

    python notebooks/sync.py
"""

from __future__ import annotations

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cells(source: str) -> list[dict]:
    out = []
    for block in re.split(r"^# %%", source, flags=re.MULTILINE)[1:]:
        header, _, body = block.partition("\n")
        body = body.strip("\n")
        if header.strip() == "[markdown]":
            text = "\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body.splitlines())
            out.append({"cell_type": "markdown", "metadata": {}, "source": text.splitlines(keepends=True)})
        else:
            out.append({"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
                        "source": body.splitlines(keepends=True)})  # fmt: skip
    return out


def main() -> None:
    notebook = {
        "cells": cells((HERE / "walkthrough.py").read_text()),
        "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                     "language_info": {"name": "python"}},  # fmt: skip
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    (HERE / "walkthrough.ipynb").write_text(json.dumps(notebook, indent=1) + "\n")


if __name__ == "__main__":
    main()
