"""The detector's API: ``load_detector(path).detect(image)``."""

from __future__ import annotations

import threading
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..core.images import ImageInput
from ..loading.detector import DetectorCheckpoint, load_detector_checkpoint
from ..loading.registry import resolve_model
from ..models.detection.model import DetectorOutput
from ..models.detection.postprocess import Detection, detections


class Detector:
    """Finds comic text and bubbles: preprocessing, the MLX RT-DETR-v2, transformers' post-processing.
    One instance may be shared by threads (the MLX work runs under a lock)."""

    def __init__(self, checkpoint: DetectorCheckpoint):
        self.checkpoint = checkpoint
        self.model = checkpoint.model
        self.config = checkpoint.config
        self.image_processor = checkpoint.image_processor
        self._lock = threading.Lock()

    def preprocess(self, images: list[ImageInput]) -> tuple[np.ndarray, list[tuple[int, int]]]:
        """Images -> pixels (B, H, W, 3) and each image's original (height, width)."""
        done = [self.image_processor(image) for image in images]
        return np.stack([p for p, _ in done]), [s for _, s in done]

    def run(self, pixels: np.ndarray, queries: np.ndarray | None = None) -> DetectorOutput:
        """The model on preprocessed pixels (B, H, W, 3), evaluated (``queries``: see ``DetectorModel``)."""
        with self._lock:
            dtype = self.model.enc_score_head.weight.dtype
            out = self.model(mx.array(pixels).astype(dtype), None if queries is None else mx.array(queries))
            mx.eval(out.logits, out.boxes)
        return out

    def detect_batch(self, images: list[ImageInput], threshold: float = 0.3) -> list[list[Detection]]:
        """Several pages as one batch -> each page's detections (descending score, score > threshold)."""
        if not 0 <= threshold < 1:
            raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
        if not images:
            return []
        pixels, sizes = self.preprocess(list(images))
        out = self.run(pixels)
        logits = np.array(out.logits.astype(mx.float32))
        boxes = np.array(out.boxes.astype(mx.float32))
        return [detections(logits[i], boxes[i], size, threshold, self.config.id2label) for i, size in enumerate(sizes)]

    def detect(self, image: ImageInput, threshold: float = 0.3) -> list[Detection]:
        """One page -> its detections: ``Detection(box, label, score)``, box (x1, y1, x2, y2) in the
        page's pixels, in descending score order, those scoring above ``threshold``."""
        return self.detect_batch([image], threshold)[0]


def load_detector(path_or_repo: str | Path | None = None, dtype: str | None = None) -> Detector:
    """Load a detector from a converted folder, a Hugging Face folder or a hub id; by default the
    converted ``ogkalu/comic-text-and-bubble-detector`` (converted on first use)."""
    return Detector(load_detector_checkpoint(resolve_model("detector", path_or_repo), dtype=dtype))
