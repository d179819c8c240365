"""What a build wrote: the sha256 and size of its files, for the manifests of the demo models.

A manifest lists every file it vouches for, so a rebuild can be compared file by file and a
corrupted download found. The vision build (`neurochat.training.vision`) and the demo bundle
(`train.demo_bundle`) both record their files this way.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Iterable


def file_records(root: str | Path, folders: Iterable[str | Path] | None = None, *,
                 keep: Callable[[Path], bool] | None = None) -> dict[str, dict]:  # fmt: skip
    """sha256 and size of every file under `folders` (default: all of `root`), keyed by its path
    relative to `root` (POSIX separators).

    Folders are walked in the order given, each in sorted path order. `keep(relative_path)` leaves
    out the files it returns False for (locks, logs, the manifest itself).
    """
    root = Path(root)
    records = {}
    for folder in [root] if folders is None else folders:
        for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
            relative = path.relative_to(root)
            if keep is None or keep(relative):
                records[relative.as_posix()] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                                                "bytes": path.stat().st_size}  # fmt: skip
    return records
