"""The PyTorch page pipeline, as people run it today: transformers' RT-DETR-v2 detector and its
``post_process_object_detection``, then manga-ocr's ``generate`` on each crop (``batch_size=1``, as
mokuro and comic-translate call it) or on batches of crops.

It plugs transformers into ``mlx_mangaocr.pipelines.pages.PageReader`` in place of the MLX models, so the
clean-up, reading order, crop and slicing rules are the same code: the tests use it as the page
oracle, and the benchmark as the PyTorch side.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from mlx_mangaocr.models.detection.postprocess import Detection
from mlx_mangaocr.pipelines.ocr import Recognition
from mlx_mangaocr.pipelines.pages import PageReader

from .reference import TorchDetector, TorchOcr


class TorchPageDetector:
    """``detect_batch`` with transformers' detector, image processor and post-processing."""

    def __init__(self, folder, device: str = "cpu"):
        self.side = TorchDetector(device)
        self.side.load(str(folder))

    def detect_batch(self, images, threshold: float = 0.3) -> list[list[Detection]]:
        pixels, sizes = self.side.preprocess(list(images))
        found = self.side.postprocess(self.side.model(pixels), sizes, threshold)
        return [[Detection(tuple(box), label, score) for label, box, score in page] for page in found]


class _Preprocess:
    def __init__(self, side: TorchOcr):
        self.side = side

    def __call__(self, image) -> np.ndarray:
        return self.side.preprocess([image])[0].cpu().numpy()


class TorchPageOcr:
    """manga-ocr's preprocessing and ``generate`` (on padded batches, as people batch it) behind
    the two calls ``PageReader`` makes."""

    def __init__(self, folder, device: str = "cpu"):
        self.side = TorchOcr(str(folder), device)
        self.side.load()
        self.image_processor = _Preprocess(self.side)

    def recognize_stream(self, chunks, batch_size: int = 16, **decoding) -> Iterator[Recognition]:
        for pixels in chunks:
            tensor = self.side.torch.from_numpy(pixels).to(self.side.device)
            for ids in self.side.generate(tensor, decoding):
                yield Recognition(self.side.text(ids), ids, float("nan"))


def torch_page_reader(ocr_folder, detector_folder, device: str = "cpu", rules=None, reading=None,
                      decoding: dict | None = None) -> PageReader:  # fmt: skip
    """A ``PageReader`` running transformers' detector and manga-ocr's generate (no confidences)."""
    return PageReader(TorchPageOcr(ocr_folder, device), TorchPageDetector(detector_folder, device), rules, reading,
                      decoding)  # fmt: skip
