"""A page with its blocks drawn: boxes coloured by kind, numbered in reading order, bubbles outlined."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from .page import Page

COLOURS = {"text_bubble": (0, 110, 255), "text_free": (230, 40, 40)}
BUBBLE = (0, 170, 80)


def draw_page(image: Image.Image, page: Page) -> Image.Image:
    """A copy of ``image`` (RGB) with each block's box (blue: text_bubble, red: text_free), its
    number in reading order, and its bubble (green)."""
    out = image.convert("RGB")
    draw = ImageDraw.Draw(out)
    line = max(2, round(min(page.width, page.height) / 400))
    size = max(14, round(min(page.width, page.height) / 40))
    font = ImageFont.load_default(size=size)
    for bubble in {b.bubble for b in page.blocks if b.bubble}:
        draw.rectangle(bubble, outline=BUBBLE, width=max(1, line // 2))
    for number, block in enumerate(page.blocks, 1):
        colour = COLOURS.get(block.kind, (255, 160, 0))
        draw.rectangle(block.box, outline=colour, width=line)
        label = str(number)
        left, top, right, bottom = draw.textbbox((0, 0), label, font=font)
        x, y = block.box[0], max(0, block.box[1] - (bottom - top) - 2 * line)
        draw.rectangle((x, y, x + right - left + 2 * line, y + bottom - top + 2 * line), fill=colour)
        draw.text((x + line - left, y + line - top), label, fill="white", font=font)
    return out
