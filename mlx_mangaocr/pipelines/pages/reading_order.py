"""Reading order by recursive XY-cut: manga order by default (right to left, then top to bottom).

A group of text boxes is cut along an empty band of its projection (rows or columns no box
covers), then each part again, until a part is one box:
1. Panel borders first. When the page image is given, a band that holds a panel border, a row (or
   column) of the page dark (below ``DARK``) over at least ``BORDER`` of the group's extent, is a
   cut between panels. Horizontal ones come first (tiers are read top to bottom), then vertical ones
   (panels right to left).
2. Otherwise the text's own gaps: horizontal first (top to bottom), then vertical (right to left).
   Inside a panel, text lying wholly above other text is read first, side-by-side text right to left.
3. Of several bands of the same kind, the widest is cut first.
4. Boxes that overlap both ways are read by their right edge, then their top.

``right_to_left=False`` reads left to right (western and horizontal pages); only gaps of at least
``min_gap`` px count.
"""

from __future__ import annotations

import numpy as np

from .boxes import Box

DARK = 128  # gray levels below this are ink or panel borders
BORDER = 0.6  # a border line spans at least this share of the group's extent


def _gaps(spans: list[tuple[int, int]], min_gap: int) -> list[tuple[int, int]]:
    """The gaps (start, end) of at least ``min_gap`` px in the union of ``spans``, widest first."""
    spans = sorted(spans)
    gaps, reach = [], spans[0][1]
    for start, end in spans[1:]:
        if start - reach >= max(min_gap, 1):
            gaps.append((reach, start))
        reach = max(reach, end)
    return sorted(gaps, key=lambda g: g[0] - g[1])


def _has_border(gray: np.ndarray | None, band: tuple[int, int], across: tuple[int, int], axis: int) -> bool:
    """Whether a line of the page inside ``band`` (rows for axis 0, columns for axis 1) is dark over
    at least ``BORDER`` of ``across``."""
    if gray is None or across[1] <= across[0]:
        return False
    if axis == 0:
        region = gray[band[0] : band[1], across[0] : across[1]]
    else:
        region = gray[across[0] : across[1], band[0] : band[1]].T
    return region.size > 0 and float((region < DARK).mean(axis=1).max()) >= BORDER


def reading_order(
    boxes: list[Box], page: np.ndarray | None = None, right_to_left: bool = True, min_gap: int = 1
) -> list[int]:
    """The indices of ``boxes`` in reading order; ``page`` is the page in gray levels (H, W) uint8,
    or None to order by the boxes alone."""
    order: list[int] = []

    def cut(indices: list[int]) -> None:
        if len(indices) <= 1:
            order.extend(indices)
            return
        xs = (min(boxes[i][0] for i in indices), max(boxes[i][2] for i in indices))
        ys = (min(boxes[i][1] for i in indices), max(boxes[i][3] for i in indices))
        rows = _gaps([(boxes[i][1], boxes[i][3]) for i in indices], min_gap)
        cols = _gaps([(boxes[i][0], boxes[i][2]) for i in indices], min_gap)
        candidates = [
            *((0, g) for g in rows if _has_border(page, g, xs, 0)),
            *((1, g) for g in cols if _has_border(page, g, ys, 1)),
            *((0, g) for g in rows[:1]),
            *((1, g) for g in cols[:1]),
        ]
        if not candidates:
            key = (lambda i: (-boxes[i][2], boxes[i][1])) if right_to_left else (lambda i: (boxes[i][0], boxes[i][1]))
            order.extend(sorted(indices, key=key))
            return
        axis, (start, _) = candidates[0]
        if axis == 0:
            parts = [[i for i in indices if boxes[i][3] <= start], [i for i in indices if boxes[i][3] > start]]
        else:
            left = [i for i in indices if boxes[i][2] <= start]
            right = [i for i in indices if boxes[i][2] > start]
            parts = [right, left] if right_to_left else [left, right]
        for part in parts:
            cut(part)

    cut(list(range(len(boxes))))
    return order
