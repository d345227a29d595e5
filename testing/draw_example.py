"""The README's drawn page: a generated page's true text boxes, ordered and drawn by the page reader's
own code (``--draw``). The real detector weights cannot be run where this project is built.

    python -m testing.draw_example assets/drawn-page.png
"""

from __future__ import annotations

import sys

import numpy as np

from mlx_mangaocr.pipelines.pages.crops import font_size
from mlx_mangaocr.pipelines.pages.draw import draw_page
from mlx_mangaocr.pipelines.pages.page import Block, Page
from mlx_mangaocr.pipelines.pages.reading_order import reading_order

from .pages import make_page


def main(argv=None) -> None:
    out = (argv or sys.argv[1:] or ["assets/drawn-page.png"])[0]
    page = make_page(0)
    gray = np.asarray(page.image.convert("L"))
    regions = [page.regions[i] for i in reading_order([r.box for r in page.regions], gray)]
    blocks = [Block(r.box, r.kind, r.vertical, "", 1.0, r.bubble, font_size(gray, r.box)) for r in regions]
    drawn = draw_page(page.image, Page(page.image.width, page.image.height, blocks))
    drawn.resize((drawn.width * 3 // 5, drawn.height * 3 // 5)).save(out, optimize=True)
    print(out)


if __name__ == "__main__":
    main()
