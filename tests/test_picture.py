"""Pictures reach Gradio as files written once: a picture sent again never rewrites one a browser may be reading."""

from __future__ import annotations

import os
import time

import numpy as np

from neurochat.app import picture
from neurochat.app.picture import Picture, picture_file


def test_the_same_picture_is_one_file_written_once(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    first = picture_file(image, tmp_path)
    inode = os.stat(first).st_ino
    again = picture_file(image.copy(), tmp_path)
    assert again == first and os.stat(again).st_ino == inode  # not rewritten, not replaced
    other = picture_file(255 - image, tmp_path)
    assert other != first and len(list(tmp_path.iterdir())) == 2  # no staging file left behind


def test_the_component_turns_an_array_into_that_file(tmp_path, monkeypatch):
    monkeypatch.setattr(picture, "picture_folder", lambda: tmp_path)
    image = np.zeros((8, 8, 3), np.uint8)
    assert Picture().postprocess(image).path == picture_file(image, tmp_path)
    assert Picture().postprocess(None) is None
    assert Picture().get_block_name() == "image"  # drawn by gr.Image's frontend: there is no other


def test_pictures_older_than_the_keep_time_are_removed(tmp_path, monkeypatch):
    old = tmp_path / "old.png"
    old.write_bytes(b"x")
    os.utime(old, (time.time() - picture.KEEP_S - 1,) * 2)
    monkeypatch.setattr(picture, "_pruned_at", [0.0])
    kept = picture_file(np.zeros((4, 4, 3), np.uint8), tmp_path)
    assert not old.exists() and os.path.exists(kept)
