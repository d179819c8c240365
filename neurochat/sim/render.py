"""Draw SimNSD scenes: a procedural background per context plus emoji sprites at their boxes.

Sprites are the committed PNGs under `assets/emoji/` (rendered once from Noto Color Emoji); the
backgrounds are drawn with Pillow from the scene's own seed, so the same scene always gives the
same pixels.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from neurochat.errors import DataError
from neurochat.sim.concepts import OBJECTS_BY_NAME, sprite_filename
from neurochat.sim.scenes import CANVAS, HORIZON, Scene

SPRITE_DIR = Path(__file__).resolve().parents[2] / "assets" / "emoji"


@lru_cache(maxsize=None)
def load_sprite(name: str) -> Image.Image:
    """The RGBA sprite of object concept `name`."""
    path = SPRITE_DIR / sprite_filename(OBJECTS_BY_NAME[name])
    if not path.exists():
        raise DataError(f"missing sprite {path}: rebuild them with `python assets/render_emoji_sprites.py`")
    with Image.open(path) as image:
        return image.convert("RGBA")


def render_scene(scene: Scene, size: int = CANVAS) -> np.ndarray:
    """The scene as a (size, size, 3) uint8 RGB array."""
    canvas = _background(scene.scene, np.random.default_rng(scene.background_seed))
    for obj in scene.objects:
        sprite = load_sprite(obj.name)
        for (x, y, w, h), flip in zip(obj.boxes, obj.flips):
            fitted = sprite.copy()
            fitted.thumbnail((round(w), round(h)), Image.Resampling.LANCZOS)
            if flip:
                fitted = fitted.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            # centre the (aspect-preserving) sprite in its box; the box's bottom is the object's foot
            left = round(x + (w - fitted.width) / 2)
            top = round(y + h - fitted.height)
            canvas.alpha_composite(fitted, (left, top))
    image = canvas.convert("RGB")
    if size != CANVAS:
        image = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _background(context: str, rng: np.random.Generator) -> Image.Image:
    horizon = round(HORIZON[context] * CANVAS)
    image = Image.new("RGBA", (CANVAS, CANVAS))
    draw = ImageDraw.Draw(image)
    jitter = lambda rgb, amount=14: tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)  # noqa: E731

    if context in ("grass", "beach", "street", "snow", "sky"):
        sky_top, sky_bottom = jitter((70, 130, 210)), jitter((170, 210, 245))
        if context == "snow":
            sky_top, sky_bottom = jitter((150, 165, 185)), jitter((210, 215, 225))
        _vertical_gradient(draw, 0, horizon, sky_top, sky_bottom)
        for _ in range(int(rng.integers(1, 4))):  # clouds
            cx, cy = rng.uniform(0, CANVAS), rng.uniform(5, max(6, horizon * 0.6))
            for _ in range(4):
                r = rng.uniform(6, 12)
                ox, oy = rng.uniform(-12, 12), rng.uniform(-4, 4)
                draw.ellipse((cx + ox - r, cy + oy - r * 0.6, cx + ox + r, cy + oy + r * 0.6), fill=(245, 245, 250, 255))

    if context == "grass":
        _vertical_gradient(draw, horizon, CANVAS, jitter((90, 160, 60)), jitter((50, 120, 35)))
        _speckle(draw, rng, horizon, (40, 100, 30), (120, 190, 80), n=260)
    elif context == "beach":
        shore = horizon + round(0.18 * CANVAS)
        _vertical_gradient(draw, horizon, shore, jitter((40, 110, 170)), jitter((70, 150, 190)))
        _vertical_gradient(draw, shore, CANVAS, jitter((225, 205, 150)), jitter((210, 185, 130)))
        _speckle(draw, rng, shore, (190, 170, 120), (240, 225, 180), n=160)
    elif context == "street":
        _vertical_gradient(draw, horizon, CANVAS, jitter((110, 110, 115)), jitter((80, 80, 85)))
        draw.rectangle((0, horizon, CANVAS, horizon + 6), fill=jitter((170, 165, 160)) + (255,))  # sidewalk
        lane_y = (horizon + CANVAS) // 2 + 8
        for x in range(int(rng.integers(0, 10)), CANVAS, 24):
            draw.rectangle((x, lane_y, x + 12, lane_y + 2), fill=(235, 220, 120, 255))
    elif context == "snow":
        _vertical_gradient(draw, horizon, CANVAS, jitter((240, 244, 250)), jitter((215, 225, 240)))
        _speckle(draw, rng, 0, (255, 255, 255), (255, 255, 255), n=70)
    elif context == "room":
        wall = jitter((200, 180, 150), 30)
        _vertical_gradient(draw, 0, horizon, wall, tuple(max(0, c - 25) for c in wall))
        floor = jitter((150, 100, 60), 25)
        _vertical_gradient(draw, horizon, CANVAS, floor, tuple(max(0, c - 35) for c in floor))
        for y in range(horizon + 8, CANVAS, 10):  # floorboards
            draw.line((0, y, CANVAS, y), fill=tuple(max(0, c - 45) for c in floor) + (255,))
        if rng.random() < 0.6:  # a window
            x0 = rng.uniform(8, CANVAS - 48)
            draw.rectangle((x0, 10, x0 + 38, 40), fill=(160, 205, 240, 255), outline=(250, 250, 250, 255), width=3)
    elif context == "sky":
        pass  # only the sky gradient and clouds
    else:
        raise DataError(f"unknown scene context {context!r}")
    return image.filter(ImageFilter.SMOOTH) if context != "street" else image


def _vertical_gradient(draw: ImageDraw.ImageDraw, top: int, bottom: int, start, end) -> None:
    span = max(1, bottom - top)
    for y in range(top, bottom):
        t = (y - top) / span
        colour = tuple(int(round(a + (b - a) * t)) for a, b in zip(start, end))
        draw.line((0, y, CANVAS, y), fill=colour + (255,))


def _speckle(draw, rng, top, dark, light, n) -> None:
    for _ in range(n):
        x, y = rng.uniform(0, CANVAS), rng.uniform(top, CANVAS)
        t = rng.random()
        colour = tuple(int(a + (b - a) * t) for a, b in zip(dark, light))
        draw.point((x, y), fill=colour + (255,))
