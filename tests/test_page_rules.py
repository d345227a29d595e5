"""The page rules on their own, with known answers: detection clean-up, bubbles, reading order,
long-line chunks, font size, and tall-page slices (see mlx_mangaocr/pages and the README)."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mlx_mangaocr import PageReader
from mlx_mangaocr.models.detection.postprocess import Detection
from mlx_mangaocr.pipelines.pages.boxes import BoxRules, text_boxes, to_pixels
from mlx_mangaocr.pipelines.pages.crops import font_size, grow, split_long
from mlx_mangaocr.pipelines.pages.reader import ReadingRules
from mlx_mangaocr.pipelines.pages.reading_order import reading_order
from mlx_mangaocr.pipelines.pages.slicing import merge_slices, slices
from testing.page_truth import TruthDetector
from testing.pages import make_page, make_webtoon


def det(box, label="text_bubble", score=0.9):
    return Detection(tuple(float(v) for v in box), label, score)


def test_boxes_are_rounded_outwards_clamped_and_tiny_ones_dropped():
    assert to_pixels((10.2, 20.9, 30.1, 40.0), 100, 100) == (10, 20, 31, 40)
    assert to_pixels((-5.5, -1, 120.3, 99.2), 100, 90) == (0, 0, 100, 90)
    candidates = [det((0, 0, 5, 50)), det((0, 0, 6, 50)), det((10, 10, 40, 15.5)), det((50, 50, 60, 60), score=0.3)]
    found = text_boxes(candidates, 100, 100)
    assert [t.box for t in found] == [(0, 0, 6, 50), (10, 10, 40, 16)]  # 5 px wide dropped; score 0.3 not above 0.3
    assert [t.box for t in text_boxes([det((0, 0, 5, 50))], 100, 100, BoxRules(min_size=4))] == [(0, 0, 5, 50)]


def test_contained_boxes_merge_and_duplicates_drop():
    inner, outer = det((12, 12, 28, 40), score=0.95), det((10, 10, 30, 60), "text_free", 0.8)
    (merged,) = text_boxes([inner, outer], 100, 100)
    assert merged.box == (10, 10, 30, 60) and merged.score == 0.95 and merged.kind == "text_bubble"
    # 70% inside: not merged at 0.8, merged at 0.6
    half = det((20, 10, 40, 60), score=0.5)  # overlaps (10, 10, 30, 60) on half its width
    assert len(text_boxes([outer, half], 100, 100, BoxRules(duplicate_iou=0.9))) == 2
    assert [t.box for t in text_boxes([outer, half], 100, 100, BoxRules(contained=0.5))] == [(10, 10, 40, 60)]
    # IoU >= 0.5: the lower score goes; just below: both stay
    a, b = det((0, 0, 30, 30), score=0.9), det((0, 10, 30, 40), score=0.8)  # IoU 20/40 = 0.5
    assert [t.score for t in text_boxes([b, a], 100, 100, BoxRules(contained=1))] == [0.9]
    c = det((0, 11, 30, 41), score=0.8)  # IoU 19/41
    assert len(text_boxes([a, c], 100, 100, BoxRules(contained=1))) == 2


def test_text_is_tied_to_the_bubble_that_covers_most_of_it():
    bubbles = [det((0, 0, 50, 100), "bubble"), det((40, 0, 200, 100), "bubble")]
    text = det((30, 10, 70, 90), "text_free")  # 10/40 in the first bubble, 30/40 in the second
    (tied,) = text_boxes([*bubbles, text], 300, 300)
    assert tied.bubble == (40, 0, 200, 100) and tied.kind == "text_bubble"
    outside = det((250, 10, 290, 90), "text_free")
    (free,) = text_boxes([*bubbles, outside], 300, 300)
    assert free.bubble is None and free.kind == "text_free"
    barely = det((190, 10, 230, 90), "text_bubble")  # a quarter inside: kept its label, no bubble
    (alone,) = text_boxes([*bubbles, barely], 300, 300)
    assert alone.bubble is None and alone.kind == "text_bubble"
    assert text_boxes([*bubbles, barely], 300, 300, BoxRules(bubble_overlap=0.2))[0].bubble == (40, 0, 200, 100)


def test_reading_order_on_generated_pages_and_without_the_image():
    """Every region in manga order on 160 generated pages (4 layouts x 40 seeds, shuffled boxes);
    without the page image (no panel borders) the text gaps alone still order most of them."""
    exact = without_image = 0
    rng = np.random.default_rng(0)
    for seed in range(40):
        layouts = (make_page(seed), make_page(seed, 1600, 900, 2, 3), make_page(seed, 1200, 1200), make_webtoon(seed))
        for page in layouts:
            boxes = [r.box for r in page.regions]
            perm = rng.permutation(len(boxes))
            shuffled = [boxes[i] for i in perm]
            gray = np.asarray(page.image.convert("L"))
            exact += [int(perm[i]) for i in reading_order(shuffled, gray)] == list(range(len(boxes)))
            without_image += [int(perm[i]) for i in reading_order(shuffled)] == list(range(len(boxes)))
    assert exact == 160
    assert without_image >= 120


def test_reading_order_basics():
    # two columns of a tier: right first, top to bottom inside each; left to right when asked
    boxes = [(0, 0, 10, 40), (20, 0, 30, 40), (0, 100, 30, 120)]
    assert reading_order(boxes) == [1, 0, 2]
    assert reading_order(boxes, right_to_left=False) == [0, 1, 2]
    overlapping = [(0, 0, 20, 20), (10, 10, 30, 30)]
    assert reading_order(overlapping) == [1, 0] and reading_order([]) == []


def long_line(length: int, thickness: int, glyphs: int, vertical: bool):
    """A page with one long line of square black glyphs separated by white gaps; the gap centres."""
    page = Image.new("L", (thickness + 20, length + 20) if vertical else (length + 20, thickness + 20), 255)
    draw = ImageDraw.Draw(page)
    pitch = length / glyphs
    for g in range(glyphs):
        a, b = 10 + round(g * pitch + 0.15 * pitch), 10 + round((g + 1) * pitch - 0.15 * pitch)
        draw.rectangle((12, a, 8 + thickness, b) if vertical else (a, 12, b, 8 + thickness), fill=0)
    box = (10, 10, 10 + thickness, 10 + length) if vertical else (10, 10, 10 + length, 10 + thickness)
    return np.asarray(page), box, pitch


@pytest.mark.parametrize("vertical", [True, False])
def test_long_lines_are_cut_at_low_ink_into_chunks_under_the_limit(vertical):
    limit = 16 if vertical else 8
    gray, box, pitch = long_line(40 * (limit * 2 + 5), 40, glyphs=int(2 * limit + 5), vertical=vertical)
    chunks = split_long(gray, box)
    assert len(chunks) == 3  # aspect 2 x limit + 5: three chunks
    axis = 1 if vertical else 0
    assert chunks[0][axis] == box[axis] and chunks[-1][axis + 2] == box[axis + 2]
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert a[axis + 2] == b[axis]  # contiguous
        cut = a[axis + 2]
        inside = gray[cut, 12:48] if vertical else gray[12:48, cut]
        assert inside.min() == 255  # every cut falls in a white gap between glyphs
    short, short_box, _ = long_line(40 * limit, 40, limit, vertical)  # aspect exactly the limit: whole
    assert split_long(short, short_box) == [short_box]


def test_a_long_line_reads_as_its_chunks_joined(tiny_processor):
    line, box, _ = long_line(40 * 37, 40, glyphs=37, vertical=True)
    gray = np.full((line.shape[0], 500), 255, np.uint8)  # wide enough not to be sliced as a tall page
    gray[:, : line.shape[1]] = line
    image = Image.fromarray(gray).convert("RGB")
    detector = TruthDetector([])
    detector.detect_batch = lambda images, threshold: [[det(box, "text_free")] for _ in images]
    page = PageReader(tiny_processor, detector, reading=ReadingRules(margin=0)).read_page(image)
    chunks = split_long(gray, box)
    assert len(chunks) == 3 and [b.box for b in page.blocks] == [box]
    assert page.blocks[0].text == "".join(tiny_processor.process_images([image.crop(c) for c in chunks]))


def test_font_size_is_the_width_of_the_text_columns():
    for size in (12, 24, 40):
        page = Image.new("L", (400, 400), 255)
        draw = ImageDraw.Draw(page)
        for col in range(3):  # three vertical columns of glyphs, size px wide, size / 2 apart
            x = 20 + col * int(size * 1.5)
            for row in range(4):
                y = 20 + row * int(size * 1.2)
                draw.rectangle((x, y, x + size - 1, y + size - 1), fill=0)
        box = (15, 15, 20 + 3 * int(size * 1.5), 25 + 4 * int(size * 1.2))
        assert font_size(np.asarray(page), box) == size
        # horizontal text: the same glyphs transposed
        assert font_size(np.asarray(page).T.copy(), (box[1], box[0], box[3] + 200, box[2])) == size
    assert font_size(np.full((50, 50), 255, np.uint8), (0, 0, 10, 40)) == 10  # no ink: the box's width


def test_crop_margin_grows_the_box_within_the_page():
    assert grow((100, 100, 140, 300), 0.05, 1000, 1000) == (98, 98, 142, 302)
    assert grow((0, 0, 40, 200), 0.5, 50, 150) == (0, 0, 50, 150)


def test_slices_cover_a_tall_page_with_overlap():
    assert slices(1000, 1400) == [(0, 1400)] and slices(100, 350) == [(0, 350)]
    for width, height in [(700, 4200), (100, 351), (800, 20000), (1, 100000)]:
        bounds = slices(width, height)
        assert bounds[0][0] == 0 and bounds[-1][1] == height and len(bounds) <= 32
        for (t1, b1), (t2, b2) in zip(bounds, bounds[1:], strict=False):
            assert t1 < t2 < b1 <= b2 and b1 - t2 >= 0.2 * (b1 - t1) - 1  # 20% overlap


def test_boxes_cut_by_slices_are_joined():
    """A box crossing two slice edges comes back whole; boxes seen whole twice are left to the
    page's clean-up, which keeps one."""
    bounds = [(0, 2100), (1680, 3780), (2100, 4200)]
    long_box = (100, 1500, 200, 3900)  # spans all three slices
    found = []
    for top, bottom in bounds:
        y1, y2 = max(long_box[1], top), min(long_box[3], bottom)
        found.append([det((100, y1 - top, 200, y2 - top))])
    merged = merge_slices(found, bounds, 4200)
    assert [d.box for d in text_boxes(merged, 700, 4200)] == [long_box]
    twice = [[det((10, 1800, 60, 1900))], [det((10, 120, 60, 220))], []]  # whole in two slices
    assert [d.box for d in text_boxes(merge_slices(twice, bounds, 4200), 700, 4200)] == [(10, 1800, 60, 1900)]
