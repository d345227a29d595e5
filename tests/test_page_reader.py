"""The page reader on generated pages with known answers (a detector stand-in that returns the true
boxes), and end to end on random checkpoints against a reference pipeline built on transformers."""

import numpy as np
import pytest
from hostile import exif_rotated_jpeg
from PIL import Image

from mlx_mangaocr import InvalidImageError, Page, PageReader
from mlx_mangaocr.pipelines.pages.boxes import BoxRules
from mlx_mangaocr.pipelines.pages.reader import ReadingRules
from testing.page_truth import TruthDetector
from testing.pages import TEXT_CROPS, make_page, make_webtoon

PAGES = [
    make_page(0),
    make_page(3),
    make_page(26, width=1200, height=1200),
    make_page(4, width=1600, height=900, rows=2, cols=3),
    make_webtoon(2),
]


def pasted_crop(region) -> Image.Image:
    """The crop the generator pasted, rebuilt from its source file."""
    x1, y1, x2, y2 = region.box
    source = next(p for p in TEXT_CROPS if p.name == region.source)
    return Image.open(source).convert("RGB").resize((x2 - x1, y2 - y1), Image.BILINEAR)


def assert_same_pages(ours: list[Page], theirs: list[Page]) -> None:
    """Equal pages; confidences may differ by fp32 summation order only: the batch shape changes
    how logits are summed (errors near 1e-6 of logits below 50), and a probability moves by at most
    twice a logit's change, far below the 1e-3 allowed."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.width, a.height, len(a.blocks)) == (b.width, b.height, len(b.blocks))
        for x, y in zip(a.blocks, b.blocks, strict=True):
            assert (x.box, x.kind, x.vertical, x.text, x.bubble, x.font_size) == (
                y.box, y.kind, y.vertical, y.text, y.bubble, y.font_size)  # fmt: skip
            assert abs(x.confidence - y.confidence) < 1e-3


def test_true_boxes_give_the_true_order_kinds_and_crops(tiny_processor):
    """With the true boxes and no crop margin, every block is a pasted crop, in manga order, with
    its kind, bubble and orientation, and reads as the pasted crop does when OCRed alone."""
    reader = PageReader(tiny_processor, TruthDetector(PAGES), reading=ReadingRules(margin=0))
    pages = list(reader.read_pages([p.image for p in PAGES], batch_size=4))
    assert len(pages) == len(PAGES)
    for page, truth in zip(pages, PAGES, strict=True):
        assert (page.width, page.height) == truth.image.size
        assert [b.box for b in page.blocks] == [r.box for r in truth.regions]
        assert [b.kind for b in page.blocks] == [r.kind for r in truth.regions]
        assert [b.bubble for b in page.blocks] == [r.bubble for r in truth.regions]
        assert [b.vertical for b in page.blocks] == [r.vertical for r in truth.regions]
        alone = tiny_processor.process_images([pasted_crop(r) for r in truth.regions], batch_size=1)
        assert [b.text for b in page.blocks] == alone
        assert all(0 < b.confidence <= 1 and b.font_size >= 1 for b in page.blocks)
    assert {r.vertical for t in PAGES for r in t.regions} == {True, False}
    assert {r.kind for t in PAGES for r in t.regions} == {"text_bubble", "text_free"}


def test_read_page_equals_read_pages_and_batches_pages(tiny_processor):
    detector = TruthDetector(PAGES)
    reader = PageReader(tiny_processor, detector)
    batched = list(reader.read_pages((p.image for p in PAGES[:3]), batch_size=16, page_group=3))
    assert detector.calls == [3]  # three pages, one detector batch
    assert_same_pages(batched, [reader.read_page(p.image, batch_size=1) for p in PAGES[:3]])
    detector.calls.clear()
    grouped = list(reader.read_pages((p.image for p in PAGES[:3]), batch_size=16, page_group=2))
    assert detector.calls == [2, 1]
    assert_same_pages(grouped, batched)
    detector.calls.clear()
    grouped = list(reader.read_pages((p.image for p in PAGES[:3]), batch_size=16))  # the default group: 1 page
    assert detector.calls == [1, 1, 1]
    assert_same_pages(grouped, batched)
    detector.calls.clear()  # the crop batch does not set the detector's batch: the page group does
    assert_same_pages(list(reader.read_pages((p.image for p in PAGES[:3]), batch_size=1, page_group=3)), batched)
    assert detector.calls == [3]


def test_a_tall_page_is_detected_in_slices_and_finds_every_box_once(tiny_processor):
    page = make_webtoon(5)
    detector = TruthDetector([page])
    reader = PageReader(tiny_processor, detector)
    width, height = page.image.size
    result = reader.read_page(page.image)
    assert detector.calls == [1, 1, 1]  # 700x4200: three overlapping slices of 2100 px, a page group (1) a batch
    assert [b.box for b in result.blocks] == [r.box for r in page.regions]
    # a region cut by a slice edge: both parts come back joined into the one true box
    from mlx_mangaocr.pipelines.pages.slicing import slices

    edges = [b for _, b in slices(width, height)][:-1] + [t for t, _ in slices(width, height)][1:]
    assert any(r.box[1] < e < r.box[3] for r in page.regions for e in edges)


def test_left_to_right_reads_the_mirrored_page_in_the_same_order(tiny_processor):
    page = make_page(3)
    width = page.image.width
    mirrored = type(page)(page.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), seed=page.seed)
    for r in page.regions:
        x1, y1, x2, y2 = r.box
        bubble = r.bubble and (width - r.bubble[2], r.bubble[1], width - r.bubble[0], r.bubble[3])
        mirrored.regions.append(type(r)((width - x2, y1, width - x1, y2), r.kind, r.vertical, bubble, r.source))
    reader = PageReader(tiny_processor, TruthDetector([mirrored]), reading=ReadingRules(right_to_left=False))
    assert [b.box for b in reader.read_page(mirrored.image).blocks] == [r.box for r in mirrored.regions]


def test_bad_pages_and_options(tiny_processor, tmp_path):
    reader = PageReader(tiny_processor, TruthDetector(PAGES))
    with pytest.raises(InvalidImageError, match="image file not found"):
        reader.read_page(tmp_path / "missing.png")
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(InvalidImageError, match="is not an image PIL can read"):
        list(reader.read_pages([PAGES[0].image, tmp_path / "notes.png"]))
    with pytest.raises(ValueError, match="batch_size"):
        list(reader.read_pages([PAGES[0].image], batch_size=0))
    with pytest.raises(ValueError, match="duplicate_iou"):
        BoxRules(duplicate_iou=2)
    with pytest.raises(ValueError, match="margin"):
        ReadingRules(margin=-1)
    # a page with no text: no blocks
    blank = Page(50, 40, [])
    empty = PageReader(tiny_processor, TruthDetector([]))
    empty.detector.detect_batch = lambda images, threshold: [[] for _ in images]
    assert empty.read_page(np.full((40, 50, 3), 255, np.uint8)) == blank


@pytest.mark.parametrize("decoding", [{"num_beams": 1}, {}], ids=["greedy", "beam"])
def test_pages_equal_the_transformers_page_pipeline(tiny, small_detector, tiny_processor, decoding):
    """End to end on random checkpoints: the MLX page reader (small detector, tiny OCR model) equals
    the same pipeline on transformers' detector, post-processing and ``generate``, block for block:
    boxes, kinds, bubbles, order, font sizes and texts. A tall page goes through the slices, and a
    JPEG stored sideways is read upright by its EXIF orientation on both sides."""
    from testing.torch_pages import torch_page_reader

    images = [PAGES[0].image, PAGES[3].image, PAGES[4].image, exif_rotated_jpeg(1)[0]]
    ours = PageReader(tiny_processor, small_detector.detector, decoding=decoding)
    theirs = torch_page_reader(tiny.folder, small_detector.folder, decoding=decoding)
    mine = list(ours.read_pages(images, batch_size=4))
    reference = [theirs.read_page(image, batch_size=1) for image in images]  # one crop at a time
    for a, b in zip(mine, reference, strict=True):
        assert (a.width, a.height) == (b.width, b.height)
        assert [(x.box, x.kind, x.bubble, x.vertical, x.font_size, x.text) for x in a.blocks] == [
            (x.box, x.kind, x.bubble, x.vertical, x.font_size, x.text) for x in b.blocks
        ]
    assert (mine[-1].width, mine[-1].height) == (600, 840)
    assert sum(len(p.blocks) for p in mine) >= 5
    assert len({x.text for p in mine for x in p.blocks}) > 1
