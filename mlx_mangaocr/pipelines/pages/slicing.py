"""Tall pages (webtoons): detected in overlapping slices, the boxes merged back.

A page whose height is more than ``TALL`` (3.5) times its width is cut into full-width slices
``SLICE`` (3) widths tall, each overlapping the next by ``OVERLAP`` (20%) of a slice; the last
slice ends at the page's bottom; a page that would need more than ``MAX_SLICES`` (32) gets taller
slices instead. Each slice is detected on its own (the detector squashes any
input into its square), its boxes are shifted back into page coordinates, and boxes cut by a
slice's inner edge are joined with the boxes they overlap in the neighbouring slice. The page's
clean-up rules (``boxes.text_boxes``) then drop what both slices found whole.
"""

from __future__ import annotations

import math

from ...models.detection.postprocess import Detection

TALL = 3.5
SLICE = 3.0
OVERLAP = 0.2
MAX_SLICES = 32
EDGE = 2  # px: a box ending this close to a slice's inner edge was cut by it


def slices(width: int, height: int) -> list[tuple[int, int]]:
    """The (top, bottom) rows of the slices a page is detected in: one slice for a page that is not tall."""
    if height <= TALL * width:
        return [(0, height)]
    size = round(SLICE * width)
    if size + (MAX_SLICES - 1) * size * (1 - OVERLAP) < height:  # an absurdly thin page: fewer, taller slices
        size = math.ceil(height / (1 + (MAX_SLICES - 1) * (1 - OVERLAP)))
    step = max(1, round(size * (1 - OVERLAP)))
    count = math.ceil((height - size) / step) + 1
    tops = [min(k * step, height - size) for k in range(count)]
    return [(top, top + size) for top in tops]


def _overlap(a: float, b: float, c: float, d: float) -> float:
    return max(0.0, min(b, d) - max(a, c))


def merge_slices(found: list[list[Detection]], bounds: list[tuple[int, int]], height: int) -> list[Detection]:
    """Each slice's detections (in slice coordinates) -> the page's, cut boxes joined."""
    placed: list[tuple[Detection, bool, bool]] = []  # detection, cut at its top, cut at its bottom
    for detections, (top, bottom) in zip(found, bounds, strict=True):
        for d in detections:
            x1, y1, x2, y2 = d.box
            box = (x1, y1 + top, x2, y2 + top)
            cut_top = top > 0 and box[1] <= top + EDGE
            cut_bottom = bottom < height and box[3] >= bottom - EDGE
            placed.append((Detection(box, d.label, d.score), cut_top, cut_bottom))
    # join a box cut by a slice's bottom edge with a box of the same label cut by the next slice's
    # top edge, when they overlap vertically and over half the narrower one's width
    merged = True
    while merged:
        merged = False
        for i, (a, a_top, a_bottom) in enumerate(placed):
            for j, (b, b_top, b_bottom) in enumerate(placed):
                if i == j or not (a_bottom and b_top) or a.label != b.label:
                    continue
                (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a.box, b.box
                if not (ay1 <= by1 < ay2 <= by2) or _overlap(ax1, ax2, bx1, bx2) < 0.5 * min(ax2 - ax1, bx2 - bx1):
                    continue
                joined = Detection((min(ax1, bx1), ay1, max(ax2, bx2), by2), a.label, max(a.score, b.score))
                placed = [p for k, p in enumerate(placed) if k not in (i, j)] + [(joined, a_top, b_bottom)]
                merged = True
                break
            if merged:
                break
    return [d for d, _, _ in placed]
