"""The generated test pages: seeded, with boxes inside the page (and their bubbles), in manga order."""

import numpy as np
from PIL import Image

from testing.pages import make_page, make_webtoon


def _panel_of(page, box):
    x1, y1, x2, y2 = box
    return next(i for i, (a, b, c, d) in enumerate(page.panels) if a <= x1 and b <= y1 and x2 <= c and y2 <= d)


def test_a_seed_rebuilds_the_same_page():
    a, b = make_page(7), make_page(7)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image)) and a.regions == b.regions
    assert not np.array_equal(np.asarray(a.image), np.asarray(make_page(8).image))


def test_regions_are_inside_and_in_manga_reading_order():
    for page in (make_page(1), make_page(4, width=1600, height=900, rows=2, cols=3), make_webtoon(1)):
        width, height = page.image.size
        assert page.regions and {r.kind for r in page.regions} <= {"text_bubble", "text_free"}
        for region in page.regions:
            x1, y1, x2, y2 = region.box
            assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
            assert region.vertical == ((y2 - y1) > (x2 - x1))
            if region.bubble:
                bx1, by1, bx2, by2 = region.bubble
                assert bx1 <= x1 and by1 <= y1 and x2 <= bx2 and y2 <= by2
            assert (region.bubble is None) == (region.kind == "text_free")
        # panels: rows top to bottom, right to left in a row; regions follow their panels
        tops = [p[1] for p in page.panels]
        assert tops == sorted(tops)
        for a, b in zip(page.panels, page.panels[1:], strict=False):
            assert a[1] < b[1] or a[0] > b[0]
        panels = [_panel_of(page, r.box) for r in page.regions]
        assert panels == sorted(panels)
        for a, b in zip(page.regions, page.regions[1:], strict=False):  # right to left inside a panel
            if _panel_of(page, a.box) == _panel_of(page, b.box):
                assert a.box[0] > b.box[0]
    assert make_webtoon(1).image.height / make_webtoon(1).image.width > 3.5


def test_pages_contain_free_text_and_both_orientations():
    regions = [r for seed in range(6) for r in make_page(seed).regions]
    assert {r.kind for r in regions} == {"text_bubble", "text_free"}
    assert {r.vertical for r in regions} == {True, False}
    assert isinstance(make_page(0).image, Image.Image)
