"""Seeded manga-like pages with known text boxes and a known reading order.

Panels in a grid, ellipse and cloud bubbles, and the shared real crops (upstream manga-ocr's test
images: vertical and horizontal Japanese text) pasted inside bubbles or straight onto the panel as
text outside bubbles. ``make_page(seed, ...)`` rebuilds the same page from its seed. The reading
order is manga order: panel rows top to bottom, panels right to left in a row, and inside a panel
text right to left, except that text lying wholly above another is read first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from .synthetic import IMAGES

TEXT_CROPS = [p for p in IMAGES if p.stem.isdigit() and p.stem != "04"]  # 04 is a whole panel, not a line


@dataclass(frozen=True)
class TextRegion:
    """A pasted text crop: its box (x1, y1, x2, y2) in page pixels, its kind, the bubble around it."""

    box: tuple[int, int, int, int]
    kind: str  # "text_bubble" or "text_free"
    vertical: bool
    bubble: tuple[int, int, int, int] | None
    source: str  # the crop's file name


@dataclass
class SyntheticPage:
    image: Image.Image
    regions: list[TextRegion] = field(default_factory=list)  # in reading order
    panels: list[tuple[int, int, int, int]] = field(default_factory=list)
    seed: int = 0


def _cloud(draw: ImageDraw.ImageDraw, box, rng) -> None:
    """A cloud bubble: an ellipse with bumps along its outline."""
    x1, y1, x2, y2 = box
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    bump = max(6, min(rx, ry) * 0.18)
    for t in np.linspace(0, 2 * np.pi, 18, endpoint=False):
        bx, by = cx + (rx - bump) * np.cos(t), cy + (ry - bump) * np.sin(t)
        draw.ellipse([bx - bump, by - bump, bx + bump, by + bump], fill="white", outline="black", width=2)
    draw.ellipse([x1 + bump, y1 + bump, x2 - bump, y2 - bump], fill="white")


def _place_text(page: SyntheticPage, draw, panel, rng, crops, slots: int) -> list[TextRegion]:
    """Up to ``slots`` crops side by side in a panel, each in a bubble or free; left in reading order."""
    px1, py1, px2, py2 = panel
    width = (px2 - px1) // slots
    regions = []
    for s in range(slots):
        crop_path = crops[int(rng.integers(len(crops)))]
        crop = Image.open(crop_path).convert("RGB")
        cell = (px1 + s * width, py1, px1 + (s + 1) * width, py2)
        room_w, room_h = (cell[2] - cell[0]) * 0.55, (cell[3] - cell[1]) * 0.55
        scale = min(room_w / crop.width, room_h / crop.height, 1.5)
        if scale * min(crop.size) < 12:
            continue
        crop = crop.resize((max(1, int(crop.width * scale)), max(1, int(crop.height * scale))), Image.BILINEAR)
        jitter_x = int(rng.integers(-8, 9))
        jitter_y = int(rng.integers(0, max(1, int((cell[3] - cell[1]) - crop.height * 1.6))))
        x = (cell[0] + cell[2]) // 2 - crop.width // 2 + jitter_x
        y = cell[1] + int(crop.height * 0.3) + jitter_y
        y = min(y, cell[3] - crop.height - 8)
        free = rng.random() < 0.3
        bubble = None
        if not free:
            pad_x, pad_y = int(crop.width * 0.35) + 10, int(crop.height * 0.25) + 10
            bubble = (max(px1 + 2, x - pad_x), max(py1 + 2, y - pad_y), min(px2 - 2, x + crop.width + pad_x),
                      min(py2 - 2, y + crop.height + pad_y))  # fmt: skip
            if rng.random() < 0.5:
                draw.ellipse(bubble, fill="white", outline="black", width=3)
            else:
                _cloud(draw, bubble, rng)
        page.image.paste(crop, (x, y))
        regions.append(
            TextRegion(
                (x, y, x + crop.width, y + crop.height),
                "text_free" if free else "text_bubble",
                crop.height > crop.width,
                bubble,
                crop_path.name,
            )
        )
    regions = regions[::-1]  # right to left, unless the left one lies wholly above the right one
    if len(regions) == 2 and regions[1].box[3] < regions[0].box[1]:
        regions.reverse()
    return regions


def make_page(seed: int, width: int = 1000, height: int = 1400, rows: int = 3, cols: int = 2,
              crops: list | None = None) -> SyntheticPage:  # fmt: skip
    """A page of ``rows`` x ``cols`` panels with one or two text regions each, pasted from ``crops``
    (default ``TEXT_CROPS``)."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), "white")
    page = SyntheticPage(image=image, seed=seed)
    draw = ImageDraw.Draw(image)
    margin, gutter = int(width * 0.04), int(width * 0.02)
    panel_w = (width - 2 * margin - (cols - 1) * gutter) // cols
    panel_h = (height - 2 * margin - (rows - 1) * gutter) // rows
    for r in range(rows):
        for c in reversed(range(cols)):  # right to left
            x1 = margin + c * (panel_w + gutter)
            y1 = margin + r * (panel_h + gutter)
            panel = (x1, y1, x1 + panel_w, y1 + panel_h)
            shade = int(rng.integers(200, 256))
            draw.rectangle(panel, fill=(shade, shade, shade), outline="black", width=4)
            for _ in range(int(rng.integers(0, 4))):  # a few strokes of "art"
                a = (int(rng.integers(panel[0], panel[2])), int(rng.integers(panel[1], panel[3])))
                b = (int(rng.integers(panel[0], panel[2])), int(rng.integers(panel[1], panel[3])))
                draw.line([a, b], fill=(90, 90, 90), width=3)
            page.panels.append(panel)
            page.regions += _place_text(page, draw, panel, rng, crops or TEXT_CROPS, slots=int(rng.integers(1, 3)))
    return page


def make_webtoon(seed: int, width: int = 700, height: int = 4200, crops: list | None = None) -> SyntheticPage:
    """A tall strip (height / width 6): one column of panels, as webtoons are."""
    return make_page(seed, width=width, height=height, rows=6, cols=1, crops=crops)


VOLUME_SIZES = [(1000, 1400), (800, 1200), (1200, 1200), (1600, 900), (700, 4200)]  # (width, height); the last a strip


def make_volume(folder, count: int, crops: list | None = None, rows: int = 3, cols: int = 2) -> list[SyntheticPage]:
    """``count`` generated pages saved in ``folder`` as ``p000.png`` ..., their sizes cycling through
    ``VOLUME_SIZES`` (the strip is ``make_webtoon``), ``rows`` x ``cols`` panels with text pasted from
    ``crops`` (default ``TEXT_CROPS``); returns their truths."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pages = []
    for i in range(count):
        width, height = VOLUME_SIZES[i % len(VOLUME_SIZES)]
        if height > 3 * width:
            page = make_webtoon(i, width, height, crops=crops)
        else:
            page = make_page(i, width=width, height=height, rows=rows, cols=cols, crops=crops)
        page.image.save(folder / f"p{i:03d}.png")
        pages.append(page)
    return pages
