"""transformers' ``post_process_object_detection`` for RT-DETR (focal loss: sigmoid scores), in NumPy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detection:
    """One detection: ``box`` (x1, y1, x2, y2) in the image's pixels, ``label`` from the config's
    ``id2label`` (``bubble``, ``text_bubble``, ``text_free`` for the comic detector), ``score`` in (0, 1)."""

    box: tuple[float, float, float, float]
    label: str
    score: float


def detections(
    logits: np.ndarray, boxes: np.ndarray, size: tuple[int, int], threshold: float, id2label: dict[int, str]
) -> list[Detection]:
    """One image's logits (Q, labels) and boxes (Q, 4: cx, cy, w, h in [0, 1]) -> its detections:
    boxes scaled to ``size`` (height, width), the top Q (query, label) pairs by sigmoid score,
    those with score > threshold, in descending score order."""
    height, width = size
    cx, cy, w, h = (boxes[:, i] for i in range(4))
    xyxy = np.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], axis=-1)
    xyxy = xyxy * np.array([width, height, width, height], dtype=np.float32)
    num_queries, num_labels = logits.shape
    scores = (1 / (1 + np.exp(-logits.astype(np.float32)))).reshape(-1)
    order = np.argsort(-scores, kind="stable")[:num_queries]
    keep = order[scores[order] > threshold]
    # whole arrays to Python at once (tolist): a float() per value took most of the time
    corners, labels = xyxy[keep // num_labels].tolist(), (keep % num_labels).tolist()
    return [
        Detection(tuple(box), id2label[label], score)
        for box, label, score in zip(corners, labels, scores[keep].tolist(), strict=True)
    ]


post_process = detections  # the first name (transformers' post_process_object_detection), kept
