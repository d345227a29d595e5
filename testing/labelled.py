"""Labelled data in the formats manga OCR data comes in, generated with known boxes and texts:
a Manga109-s folder (the real dataset is licensed and cannot be fetched), ``.mokuro`` volumes
(a folder or a ``.cbz`` of pages beside the file), and JSONL lists of crops.

The pages are ``testing.pages.make_page`` pages: the shared real crops pasted at known boxes, so
a box's label is upstream's expected text for its crop (``EXPECTED``)."""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from .pages import make_page
from .synthetic import EXAMPLES

EXPECTED = {r["filename"]: r["result"] for r in json.loads((EXAMPLES / "expected_results.json").read_text("utf-8"))}


@dataclass(frozen=True)
class Labelled:
    """A box that a source lists: its page file, its box (x1, y1, x2, y2) and its label."""

    page: Path
    box: tuple[int, int, int, int]
    text: str


def make_manga109(root: Path, books: dict[str, int], seed: int = 0) -> dict[str, Labelled]:
    """A Manga109-s root with ``books`` (title -> page count); returns {sample id: Labelled} where
    a sample id is ``TITLE/NNN/ID``, as the Manga109 source names them."""
    (root / "annotations").mkdir(parents=True)
    (root / "books.txt").write_text("".join(f"{t}\n" for t in books), encoding="utf-8")
    truth: dict[str, Labelled] = {}
    for b, (title, count) in enumerate(books.items()):
        (root / "images" / title).mkdir(parents=True)
        pages = []
        for index in range(count):
            page = make_page(seed + 100 * b + index, width=900, height=1200, rows=2, cols=2)
            path = root / "images" / title / f"{index:03d}.jpg"
            page.image.save(path, quality=95)
            texts = []
            for r, region in enumerate(page.regions):
                text_id = f"{b:02x}{index:03x}{r:03x}"
                x1, y1, x2, y2 = region.box
                label = EXPECTED[region.source]
                truth[f"{title}/{index:03d}/{text_id}"] = Labelled(path, region.box, label)
                texts.append(f'<text id="{text_id}" xmin="{x1}" ymin="{y1}" xmax="{x2}" ymax="{y2}">'
                             f"{escape(label)}</text>")  # fmt: skip
            frame = f'<frame id="f{index:03x}" xmin="0" ymin="0" xmax="10" ymax="10"/>'
            pages.append(f'<page index="{index}" width="900" height="1200">{frame}{"".join(texts)}</page>')
        xml = (f"<?xml version='1.0' encoding='utf-8'?>\n<book title={quoteattr(title)}><characters/>"
               f"<pages>{''.join(pages)}</pages></book>\n")  # fmt: skip
        (root / "annotations" / f"{title}.xml").write_text(xml, encoding="utf-8")
    return truth


def make_mokuro(folder: Path, name: str, count: int, archive: bool = False, seed: int = 0) -> tuple[Path, list]:
    """``folder/NAME.mokuro`` with its pages in ``folder/NAME/`` (or ``NAME.cbz``); each block's
    text is its crop's expected text cut into two lines. Returns the file and, in order, the
    (page name, box, text) of every block."""
    folder.mkdir(parents=True, exist_ok=True)
    pages, truth, files = [], [], {}
    for index in range(count):
        page = make_page(seed + index, width=800, height=1100, rows=2, cols=2)
        page_name = f"p{index + 1:03d}.png"
        files[page_name] = page.image
        blocks = []
        for region in page.regions:
            text = EXPECTED[region.source]
            half = len(text) // 2
            blocks.append({"box": list(region.box), "vertical": region.vertical, "font_size": 20,
                           "lines_coords": [], "lines": [text[:half], text[half:]]})  # fmt: skip
            truth.append((page_name, region.box, text))
        pages.append({"version": "0.2.1", "img_width": 800, "img_height": 1100, "blocks": blocks,
                      "img_path": page_name})  # fmt: skip
    if archive:
        with zipfile.ZipFile(folder / f"{name}.cbz", "w") as z:
            for page_name, image in files.items():
                with z.open(page_name, "w") as f:
                    image.save(f, format="PNG")
    else:
        (folder / name).mkdir()
        for page_name, image in files.items():
            image.save(folder / name / page_name)
    path = folder / f"{name}.mokuro"
    document = {"version": "0.2.1", "title": "t", "title_uuid": "u", "volume": name, "volume_uuid": "v", "pages": pages}
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return path, truth


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    """``rows`` as JSON Lines."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path
