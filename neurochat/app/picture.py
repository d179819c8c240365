"""`Picture`: a `gr.Image` that hands a picture to Gradio as a file written once, never rewritten.

Gradio stores an image array in its cache at a path named by the picture's bytes, and writes it there
again each time the same picture is sent. A browser still downloading that file from an earlier send
then gets fewer bytes than the response declared (uvicorn logs "Too little data for declared
Content-Length" and the page keeps a broken picture) — on this page the pictures that stay the same
while others change (the VAE prior beside a new β, the seen picture, a glass brain) are re-sent all
the time. A file path instead is copied into the cache by a rename, and only if it is not there yet.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import os
import shutil
import tempfile
import threading
import time
from functools import lru_cache
from pathlib import Path

import gradio as gr
import numpy as np


KEEP_S = 600  # Gradio copies a picture into its cache as it is sent: ours are only needed for a moment
_pruned_at = [0.0]


@lru_cache(maxsize=1)
def picture_folder() -> Path:
    """One folder per server process for the pictures it sends, removed when the process ends."""
    folder = Path(tempfile.mkdtemp(prefix="neurochat-pictures-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def picture_file(image: np.ndarray, folder: Path | None = None) -> str:
    """The picture as a PNG named by its content, written atomically unless already there."""
    from PIL import Image

    folder = folder or picture_folder()
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buffer, format="png")
    data = buffer.getvalue()
    path = folder / f"{hashlib.sha1(data).hexdigest()[:20]}.png"
    if not path.exists():
        staging = path.with_name(f".{path.stem}.{threading.get_ident()}.tmp")
        staging.write_bytes(data)
        os.replace(staging, path)
    _prune(folder)
    return str(path)


def _prune(folder: Path) -> None:
    """Remove pictures older than KEEP_S, at most once a minute (a long session would otherwise fill the disk)."""
    now = time.time()
    if now - _pruned_at[0] < 60:
        return
    _pruned_at[0] = now
    for old in folder.glob("*.png"):
        try:
            if now - old.stat().st_mtime > KEEP_S:
                old.unlink()
        except OSError:
            pass  # removed meanwhile by another thread


class Picture(gr.Image):
    """`gr.Image` for pictures the server sends as arrays (see the module docstring)."""

    def get_block_name(self) -> str:
        return "image"  # the browser draws it with gr.Image's own frontend

    def postprocess(self, value):
        if isinstance(value, np.ndarray):
            value = picture_file(value)
        return super().postprocess(value)
