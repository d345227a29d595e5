"""The page reader: detector, clean-up, reading order, crops, batched OCR.

from mlx_mangaocr import load_page_reader
reader = load_page_reader()                  # the converted default OCR model and detector
page = reader.read_page("page001.jpg")       # Page(width, height, blocks in reading order)
for page in reader.read_pages(paths, batch_size=16): ...
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from PIL import Image

from ...core.images import ImageInput, check_many, load_page
from ...engine.chunks import pixel_chunks
from ...engine.scheduler import check_batch_size
from ..detect import Detector, load_detector
from ..ocr import MangaOcrProcessor, load_ocr
from .boxes import BoxRules, TextBox, text_boxes
from .crops import font_size, grow, is_vertical, split_long
from .page import Block, Page
from .reading_order import reading_order
from .slicing import merge_slices, slices

PAGE_GROUP = 1  # pages read and held at once by default (README: memory); their crops stream on


@dataclass(frozen=True)
class ReadingRules:
    """How crops are cut and blocks ordered (see ``crops`` and ``reading_order``)."""

    margin: float = 0.05  # crop margin, times the box's shorter side
    split_vertical: float = 16  # a vertical box longer than this times its width is cut into chunks
    split_horizontal: float = 8  # a horizontal box longer than this times its height is cut
    right_to_left: bool = True  # manga order; False for western and horizontal pages

    def __post_init__(self):
        if not (isinstance(self.margin, (int, float)) and 0 <= self.margin <= 1):
            raise ValueError(f"margin must be in [0, 1], got {self.margin!r}")
        for name in ("split_vertical", "split_horizontal"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a number >= 1, got {getattr(self, name)!r}")


@dataclass
class _Pending:
    """A page between detection and OCR."""

    image: Image.Image
    boxes: list[TextBox]
    chunks: list[list[tuple[int, int, int, int]]]
    sizes: list[int]


class PageReader:
    """Reads whole pages: finds the text, OCRs it in batches, orders it (see the README's rules)."""

    def __init__(self, ocr: MangaOcrProcessor, detector: Detector, rules: BoxRules | None = None,
                 reading: ReadingRules | None = None, decoding: dict | None = None):  # fmt: skip
        self.ocr, self.detector = ocr, detector
        self.rules, self.reading = rules or BoxRules(), reading or ReadingRules()
        self.decoding = dict(decoding or {})

    def detect(self, pages: list[Image.Image], batch_size: int = 16) -> list[list[TextBox]]:
        """Each page's cleaned text boxes (not yet ordered); tall pages in slices; ``batch_size``
        images (pages or slices) per detector batch."""
        tiles, owners = [], []
        for p, page in enumerate(pages):
            for bounds in slices(page.width, page.height):
                tiles.append(page if bounds == (0, page.height) else page.crop((0, bounds[0], page.width, bounds[1])))
                owners.append((p, bounds))
        found = []
        for start in range(0, len(tiles), batch_size):
            found += self.detector.detect_batch(tiles[start : start + batch_size], threshold=self.rules.threshold)
        out = []
        for p, page in enumerate(pages):
            mine = [k for k, (owner, _) in enumerate(owners) if owner == p]
            detections = merge_slices([found[k] for k in mine], [owners[k][1] for k in mine], page.height)
            out.append(text_boxes(detections, page.width, page.height, self.rules))
        return out

    def arrange(self, page: Image.Image, boxes: list[TextBox]) -> _Pending:
        """Order a page's boxes, cut their chunks and estimate their font sizes."""
        gray = np.asarray(page.convert("L"))
        order = reading_order([b.box for b in boxes], gray, self.reading.right_to_left)
        boxes = [boxes[i] for i in order]
        chunks = [split_long(gray, b.box, self.reading.split_vertical, self.reading.split_horizontal) for b in boxes]
        return _Pending(page, boxes, chunks, [font_size(gray, b.box) for b in boxes])

    def crops(self, pending: _Pending) -> list[Image.Image]:
        """The images the OCR reads for a page, chunk by chunk in block order."""
        width, height = pending.image.size
        return [
            pending.image.crop(grow(chunk, self.reading.margin, width, height))
            for chunks in pending.chunks
            for chunk in chunks
        ]

    def read_pages(self, images: Iterable[ImageInput], batch_size: int = 16, page_group: int | None = None,
                   ) -> Iterator[Page]:  # fmt: skip
        """Pages from any iterable, in order. ``page_group`` pages at a time (default
        ``PAGE_GROUP``) are read, detected (their slices ``page_group`` to a detector batch) and cut
        into crops; the crops of every group flow into one stream through the OCR, ``batch_size``
        decoding together, and the next group is read only when the decoder has room for more
        crops. So the decoder stays full across pages while only a group of pages is held at once.
        A page that cannot be read raises ``InvalidImageError`` when its group is read."""
        check_batch_size(batch_size)
        page_group = PAGE_GROUP if page_group is None else page_group
        if isinstance(page_group, bool) or not isinstance(page_group, int) or page_group < 1:
            raise ValueError(f"page_group must be a whole number >= 1, got {page_group!r}")
        check_many(images, "read_pages")
        return self._read_pages(images, batch_size, page_group)

    def read_page(self, image: ImageInput, batch_size: int = 16) -> Page:
        """One page -> ``Page(width, height, blocks)``, blocks in reading order. Its slices (tall
        pages) go to the detector one at a time (the default page group), its crops ``batch_size``
        at a time."""
        return next(self.read_pages([image], batch_size=batch_size))

    def _read_pages(self, images: Iterable[ImageInput], batch_size: int, page_group: int) -> Iterator[Page]:
        laid_out: deque[_Layout] = deque()  # pages whose crops are in the stream, in order

        def crop_chunks() -> Iterator[np.ndarray]:
            for group in _groups(images, page_group):
                # the detector takes page_group images (pages or slices) a batch: its memory grows with
                # the batch, and on a CPU a larger batch is slower per page, not faster
                pending = [self.arrange(page, boxes) for page, boxes in zip(group, self.detect(group, page_group),
                                                                            strict=True)]  # fmt: skip
                crops = [crop for p in pending for crop in self.crops(p)]
                laid_out.extend(_Layout(p.image.width, p.image.height, p.boxes, p.chunks, p.sizes) for p in pending)
                del group, pending  # the pages themselves are not needed past their crops
                yield from pixel_chunks(crops, batch_size, self.ocr.image_processor)

        results: list = []
        for result in self.ocr.recognize_stream(crop_chunks(), batch_size, **self.decoding):
            results.append(result)
            while laid_out and laid_out[0].count <= len(results):
                layout = laid_out.popleft()
                yield layout.page(results[: layout.count])
                del results[: layout.count]
        while laid_out:  # pages without text at the end
            yield laid_out.popleft().page([])


@dataclass
class _Layout:
    """A page between cutting its crops and its OCR results: its size and blocks to fill."""

    width: int
    height: int
    boxes: list[TextBox]
    chunks: list[list[tuple[int, int, int, int]]]
    sizes: list[int]

    @property
    def count(self) -> int:
        """The crops the OCR reads for this page."""
        return sum(len(c) for c in self.chunks)

    def page(self, results: list) -> Page:
        blocks, at = [], 0
        for box, chunks, size in zip(self.boxes, self.chunks, self.sizes, strict=True):
            read = results[at : at + len(chunks)]
            at += len(chunks)
            text = "".join(r.text for r in read)
            confidence = float(np.mean([r.confidence for r in read]))
            blocks.append(Block(box.box, box.kind, is_vertical(box.box), text, confidence, box.bubble, size))
        return Page(self.width, self.height, blocks)


def _groups(images: Iterable[ImageInput], size: int) -> Iterator[list[Image.Image]]:
    """The pages, loaded (``load_page``), ``size`` at a time."""
    group: list[Image.Image] = []
    for image in images:
        group.append(load_page(image))
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def load_page_reader(
    ocr: MangaOcrProcessor | str | Path | None = None,
    detector: Detector | str | Path | None = None,
    **options,
) -> PageReader:
    """A page reader. ``ocr`` and ``detector``: loaded models, or a converted folder, Hugging Face
    folder or hub id each; by default the converted kha-white/manga-ocr-base and
    ogkalu/comic-text-and-bubble-detector (converted on first use).

    ``options``: the clean-up thresholds (``threshold``, ``min_size``, ``contained``,
    ``duplicate_iou``, ``bubble_overlap``), the reading rules (``margin``, ``split_vertical``,
    ``split_horizontal``, ``right_to_left``) and OCR decoding options (``num_beams``, ...).
    """
    box_names = {f.name for f in fields(BoxRules)}
    reading_names = {f.name for f in fields(ReadingRules)}
    decoding_names = {"num_beams", "max_length", "min_length", "no_repeat_ngram_size", "length_penalty",
                      "early_stopping"}  # fmt: skip
    unknown = set(options) - box_names - reading_names - decoding_names
    if unknown:
        raise TypeError(f"unknown page reader option(s): {', '.join(sorted(unknown))}")
    rules = BoxRules(**{k: v for k, v in options.items() if k in box_names})
    reading = ReadingRules(**{k: v for k, v in options.items() if k in reading_names})
    if not isinstance(ocr, MangaOcrProcessor):
        ocr = load_ocr(ocr)
    if not isinstance(detector, Detector):
        detector = load_detector(detector)
    return PageReader(ocr, detector, rules, reading, {k: v for k, v in options.items() if k in decoding_names})
