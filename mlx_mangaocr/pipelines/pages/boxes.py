"""From detections to text boxes: clamp, drop tiny boxes, merge contained ones, drop near-duplicates,
tie each text box to its bubble, over ``(x1, y1, x2, y2)`` int boxes.

The rules (defaults in ``BoxRules``):
1. ``text_bubble`` and ``text_free`` detections are text boxes, ``bubble`` detections bubbles.
2. Each box is rounded outwards to whole pixels and clamped to the page.
3. A box ``min_size`` px or less in width or height is dropped.
4. A text box whose intersection with another covers at least ``contained`` of its own area is
   merged into it (the union of both; the higher score stays), until no such pair is left.
5. Of two text boxes with IoU >= ``duplicate_iou``, the lower-scoring one is dropped.
6. A text box is tied to the bubble that covers the largest part of it, if that part is at least
   ``bubble_overlap`` of the text box's area; a tied box is ``text_bubble``, an untied one keeps
   the detector's label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]

TEXT_LABELS = ("text_bubble", "text_free")
BUBBLE_LABEL = "bubble"


@dataclass(frozen=True)
class BoxRules:
    """Thresholds of the detection clean-up (see the module's docstring)."""

    threshold: float = 0.3  # detector score threshold (strictly above)
    min_size: int = 5  # px: boxes this thin or thinner are dropped
    contained: float = 0.8  # share of a box's area inside another that merges it into the other
    duplicate_iou: float = 0.5  # IoU at or above which the lower-scoring of two boxes is dropped
    bubble_overlap: float = 0.5  # share of a text box's area a bubble must cover to hold it

    def __post_init__(self):
        for name in ("threshold", "contained", "duplicate_iou", "bubble_overlap"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 <= value <= 1):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.threshold >= 1:
            raise ValueError(f"threshold must be below 1, got {self.threshold!r}")
        if not isinstance(self.min_size, int) or self.min_size < 0:
            raise ValueError(f"min_size must be a whole number >= 0, got {self.min_size!r}")


@dataclass(frozen=True)
class TextBox:
    """A cleaned text box: its box, kind, score, and the bubble that holds it (or None)."""

    box: Box
    kind: str
    score: float
    bubble: Box | None = None


def area(box: Box) -> int:
    return max(0, box[2] - box[0]) * max(0, box[3] - box[1])


def intersection(a: Box, b: Box) -> int:
    return area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iou(a: Box, b: Box) -> float:
    inter = intersection(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union else 0.0


def union(a: Box, b: Box) -> Box:
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def to_pixels(box: Iterable[float], width: int, height: int) -> Box:
    """A float box rounded outwards to whole pixels and clamped to the page."""
    x1, y1, x2, y2 = box
    return (
        min(max(math.floor(x1), 0), width),
        min(max(math.floor(y1), 0), height),
        min(max(math.ceil(x2), 0), width),
        min(max(math.ceil(y2), 0), height),
    )


def merge_contained(items: list[tuple[Box, str, float]], contained: float) -> list[tuple[Box, str, float]]:
    """Rule 4: merge a box mostly inside another into it, until none is. Boxes are taken in
    descending score; the first pair (i, j) in that order where box i is mostly inside box j merges
    first. The containment test runs on all pairs at once (a page may have 300 detections)."""
    items = sorted(items, key=lambda item: -item[2])
    while len(items) > 1:
        b = np.array([item[0] for item in items], dtype=np.int64)
        width = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        height = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
        inter = np.clip(width, 0, None) * np.clip(height, 0, None)
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        inside = (inter >= contained * areas[:, None]) & (areas[:, None] > 0)
        np.fill_diagonal(inside, False)
        if not inside.any():
            break
        i, j = divmod(int(np.argmax(inside)), len(items))  # the first such pair in row-major order
        (a, label_a, score_a), (c, label_c, score_c) = items[i], items[j]
        keep = (label_a, score_a) if score_a > score_c else (label_c, score_c)
        items = [item for k, item in enumerate(items) if k not in (i, j)] + [(union(a, c), *keep)]
        items.sort(key=lambda item: -item[2])
    return items


def drop_duplicates(items: list[tuple[Box, str, float]], duplicate_iou: float) -> list[tuple[Box, str, float]]:
    """Rule 5: of boxes with IoU >= ``duplicate_iou``, keep the higher-scoring one."""
    kept: list[tuple[Box, str, float]] = []
    for item in sorted(items, key=lambda item: -item[2]):
        if all(iou(item[0], other[0]) < duplicate_iou for other in kept):
            kept.append(item)
    return kept


def text_boxes(detections, width: int, height: int, rules: BoxRules | None = None) -> list[TextBox]:
    """Rules 1 to 6 on one page's ``Detection`` list (any order) -> its text boxes (no order yet)."""
    rules = rules or BoxRules()
    texts, bubbles = [], []
    for d in detections:
        if d.score <= rules.threshold or d.label not in (*TEXT_LABELS, BUBBLE_LABEL):
            continue
        box = to_pixels(d.box, width, height)
        if box[2] - box[0] <= rules.min_size or box[3] - box[1] <= rules.min_size:
            continue
        (bubbles if d.label == BUBBLE_LABEL else texts).append((box, d.label, d.score))
    texts = drop_duplicates(merge_contained(texts, rules.contained), rules.duplicate_iou)
    out = []
    for box, label, score in texts:
        best = max(bubbles, key=lambda b: (intersection(box, b[0]), b[2]), default=None)
        if best is not None and intersection(box, best[0]) >= rules.bubble_overlap * area(box) > 0:
            out.append(TextBox(box, "text_bubble", score, best[0]))
        else:
            out.append(TextBox(box, label, score, None))
    return out
