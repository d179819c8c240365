"""Render SimNSD's object sprites from Debian's Noto Color Emoji font into assets/emoji/*.png.

Run once (the PNGs are committed, so nothing at run time needs the font):

    apt-get install fonts-noto-color-emoji
    python assets/render_emoji_sprites.py [--font /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf]

Noto Color Emoji is a bitmap font with one strike at 109 px; Pillow draws it with
`embedded_color=True`. Each sprite is cropped to its visible pixels and scaled so its longer side
is SPRITE_SIZE px, which keeps the files small and is larger than any object in a 128 px scene.
The font is licensed under the SIL Open Font License 1.1 (assets/emoji/LICENSE-OFL.txt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from neurochat.vocabulary import OBJECTS, sprite_filename  # noqa: E402

DEFAULT_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
FONT_STRIKE_PX = 109  # the only size the bitmap font has
SPRITE_SIZE = 96


def render_sprite(font: ImageFont.FreeTypeFont, emoji: str) -> Image.Image:
    canvas = Image.new("RGBA", (160, 160), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((0, 0), emoji, font=font, embedded_color=True)
    bbox = canvas.getbbox()
    if bbox is None:
        raise SystemExit(f"the font drew nothing for {emoji!r}: is it a colour emoji font?")
    sprite = canvas.crop(bbox)
    scale = SPRITE_SIZE / max(sprite.size)
    size = (max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale)))
    return sprite.resize(size, Image.Resampling.LANCZOS)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--font", default=DEFAULT_FONT)
    parser.add_argument("--out", default=str(REPO_ROOT / "assets" / "emoji"))
    args = parser.parse_args(argv)
    if not Path(args.font).exists():
        raise SystemExit(f"{args.font} not found: install Debian's fonts-noto-color-emoji or pass --font")
    font = ImageFont.truetype(args.font, FONT_STRIKE_PX)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for concept in OBJECTS:
        render_sprite(font, concept.emoji).save(out / sprite_filename(concept), optimize=True)
    print(f"wrote {len(OBJECTS)} sprites to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
