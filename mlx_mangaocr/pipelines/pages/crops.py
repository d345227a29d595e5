"""What the OCR reads for a text box: its crop, cut into chunks when it is one very long line, and
the box's orientation and font size.

- vertical: a text box taller than it is wide.
- crop: the box grown by ``margin`` times its shorter side on every side (clamped to the page).
  manga-ocr reads a whole multi-line bubble in one pass, so a box goes to the OCR whole.
- chunks: a box longer than ``split_vertical`` (16) times its width, or a horizontal one longer than
  ``split_horizontal`` (8) times its height, is one long line the OCR would squash into its square
  input. It is cut into ``ceil(aspect / limit)`` chunks; each cut is placed at the position with
  the least ink within a quarter chunk of the even cut, and the chunks' texts are joined.
- font size: the ink (gray below the midpoint of the crop's darkest and lightest values) is
  projected across the lines (onto the x axis for vertical text, the y axis for horizontal); each run
  of positions with ink over more than ``INKED`` (2%) of their length is a line, and the font
  size is the median run width, in px.
"""

from __future__ import annotations

import math

import numpy as np

from .boxes import Box

INKED = 0.02  # a column (row) with ink over more than this share of its length is part of a line


def is_vertical(box: Box) -> bool:
    return box[3] - box[1] > box[2] - box[0]


def grow(box: Box, margin: float, width: int, height: int) -> Box:
    """``box`` grown by ``margin`` times its shorter side on each side, clamped to the page."""
    pad = round(margin * min(box[2] - box[0], box[3] - box[1]))
    return (max(box[0] - pad, 0), max(box[1] - pad, 0), min(box[2] + pad, width), min(box[3] + pad, height))


def _ink(gray: np.ndarray) -> np.ndarray:
    """Ink mask of a gray crop: darker than the midpoint of its extremes (nothing on a flat crop)."""
    low, high = int(gray.min()), int(gray.max())
    if high - low < 32:
        return np.zeros(gray.shape, dtype=bool)
    return gray < (low + high) / 2


def split_long(gray: np.ndarray, box: Box, split_vertical: float = 16, split_horizontal: float = 8) -> list[Box]:
    """``box`` cut into chunks along its length at low-ink positions, or ``[box]`` when it is not
    longer than the limit. ``gray`` is the page (H, W) uint8."""
    x1, y1, x2, y2 = box
    vertical = is_vertical(box)
    length, thickness = (y2 - y1, x2 - x1) if vertical else (x2 - x1, y2 - y1)
    limit = split_vertical if vertical else split_horizontal
    if thickness <= 0 or length / thickness <= limit:
        return [box]
    count = math.ceil(length / thickness / limit)
    profile = _ink(gray[y1:y2, x1:x2]).sum(axis=1 if vertical else 0)  # ink per position along the line
    cuts, step = [0], length / count
    for k in range(1, count):
        ideal = round(k * step)
        lo, hi = max(cuts[-1] + 1, ideal - round(step / 4)), min(length - 1, ideal + round(step / 4))
        window = profile[lo : hi + 1]
        # least ink; among equal positions the one nearest the even cut
        cuts.append(lo + int(np.lexsort((np.abs(np.arange(lo, hi + 1) - ideal), window))[0]))
    cuts.append(length)
    if vertical:
        return [(x1, y1 + a, x2, y1 + b) for a, b in zip(cuts, cuts[1:], strict=False)]
    return [(x1 + a, y1, x1 + b, y2) for a, b in zip(cuts, cuts[1:], strict=False)]


def font_size(gray: np.ndarray, box: Box) -> int:
    """The estimated font size of the text in ``box`` (see the module docstring), in px."""
    x1, y1, x2, y2 = box
    vertical = is_vertical(box)
    thickness = (x2 - x1) if vertical else (y2 - y1)
    inked = _ink(gray[y1:y2, x1:x2]).mean(axis=0 if vertical else 1) > INKED  # per column (row)
    runs, start = [], None
    for i, flag in enumerate([*inked.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            runs.append(i - start)
            start = None
    if not runs:
        return max(1, thickness)
    return max(1, int(round(float(np.median(runs)))))
