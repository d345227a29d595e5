"""A detector stand-in that returns a generated page's true boxes, so the page logic can be tested
on known answers apart from any model."""

from __future__ import annotations

import numpy as np

from mlx_mangaocr.models.detection.postprocess import Detection
from mlx_mangaocr.pipelines.pages.slicing import slices


class TruthDetector:
    """``detect_batch`` like ``Detector``'s: each input image is found among the pages (whole or one
    of its slices) and gets that page's text and bubble boxes, clipped to the slice."""

    def __init__(self, pages, score: float = 0.9):
        self.pages, self.score, self.calls = pages, score, []

    def _locate(self, tile):
        array = np.asarray(tile)
        for page in self.pages:
            full = np.asarray(page.image)
            if full.shape[1] != array.shape[1]:
                continue
            for top, bottom in slices(page.image.width, page.image.height):
                if bottom - top == array.shape[0] and np.array_equal(full[top:bottom], array):
                    return page, top, bottom
        raise AssertionError("the reader asked about an image that is no page or slice")

    def detect_batch(self, images, threshold=0.3):
        self.calls.append(len(images))
        out = []
        for tile in images:
            page, top, bottom = self._locate(tile)
            found = []
            boxes = [(r.box, r.kind) for r in page.regions]
            boxes += [(b, "bubble") for b in {r.bubble for r in page.regions if r.bubble}]
            for (x1, y1, x2, y2), label in boxes:
                if y2 > top and y1 < bottom:
                    box = (float(x1), float(max(y1, top) - top), float(x2), float(min(y2, bottom) - top))
                    found.append(Detection(box, label, self.score))
            out.append(found)
        return out
