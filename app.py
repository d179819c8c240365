"""NeuroChat — talk with a brain recording.

    python app.py            # the built-in demo (SimNSD phantom)

The explorer UI (chat, reconstruction, 3D glass brain, concept ablation) is being built; until it
lands, this prepares the demo dataset on first run and prints what it holds.
"""

from __future__ import annotations

import argparse
import json
from typing import Sequence

from neurochat.cli import run_main
from neurochat.nsd import NSDDataset
from neurochat.nsd.__main__ import _format_info
from neurochat.paths import ensure_simnsd


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="NeuroChat on the built-in SimNSD demo")
    parser.add_argument("--seed", type=int, default=0, help="SimNSD seed of the demo data")
    parser.add_argument("--json", action="store_true", help="print the dataset summary as JSON")
    args = parser.parse_args(argv)
    root = ensure_simnsd("demo", args.seed)
    summary = NSDDataset(root).summary()
    print(json.dumps(summary, indent=2) if args.json else _format_info(summary))
    return 0


if __name__ == "__main__":
    run_main(main)
