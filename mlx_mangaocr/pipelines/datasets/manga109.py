"""Manga109-s: a root folder with ``books.txt`` (one title a line), ``annotations/TITLE.xml`` and
``images/TITLE/NNN.jpg``. Every ``<text>`` box of a page is a sample, cut as manga-ocr's own
preprocessing (``manga_ocr_dev/data/process_manga109s.py``) cuts it: the box widened by 10 px on
each side, then clipped to the page. Its label is the element's text. The XML is read with the
standard library. Pages are read as crops are (EXIF orientation not applied), and must have the
size their annotation gives."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image

from ...core.files import read_regular
from ...core.images import load_decoded
from ...core.names import display_name
from .samples import DataError, Dataset, PageCache, Problems, Sample

MARGIN = 10  # px added on each side of a box, as manga-ocr's preprocessing does


def book_titles(root: Path) -> list[str]:
    """The titles ``books.txt`` lists, in order."""
    try:
        text = read_regular(root / "books.txt").decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        why = getattr(e, "strerror", None) or e
        raise DataError(f"cannot read {display_name(root / 'books.txt')}: {why}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def read_manga109(root: Path, problem: Problems, books: list[str] | None = None) -> Dataset:
    """The text boxes of ``books`` (default: every book of ``books.txt``; a title it does not list
    is left to another root), book by book, page by page. A title that is not a plain file name, or
    is listed twice, is bad data."""
    listed = root / "books.txt"
    titles: list[str] = []
    for title in book_titles(root):
        if title in (".", "..") or any(c in title for c in "/\\\0") or Path(title).is_absolute():
            problem(f"{display_name(listed)}: the title {title!r} is not a plain name (annotations/TITLE.xml)")
        elif title in titles:
            problem(f"{display_name(listed)}: the title {title!r} is listed twice")
        else:
            titles.append(title)
    if books is not None:
        titles = [t for t in titles if t in set(books)]
    samples: list[Sample] = []
    pages = PageCache()
    inputs = [listed]
    for title in titles:
        samples += _book(root, title, problem, pages, inputs)
    return Dataset(display_name(root), "manga109", samples, problem.found, books=titles, inputs=inputs)


def _int(element: ET.Element, name: str) -> int | None:
    value = element.attrib.get(name, "")
    return int(value) if re.fullmatch(r"-?[0-9]+", value) else None


_DECLARED = re.compile(rb"""^\s*<\?xml[^>]*encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def _parse(data: bytes) -> ET.Element:
    """The XML's root. expat reads UTF-8, UTF-16 and single-byte encodings; a multi-byte one
    (Shift_JIS, EUC-JP) is decoded here first. ``ValueError`` for an encoding Python does not know."""
    declared = _DECLARED.match(data)
    name = declared.group(1).decode("ascii").lower() if declared else "utf-8"
    if name.replace("_", "-") in ("utf-8", "utf8", "us-ascii", "ascii", "utf-16", "iso-8859-1", "latin-1"):
        return ET.fromstring(data)
    try:
        text = data.decode(name)
    except LookupError:
        raise ValueError(f"the declared encoding {name!r} is not one Python knows") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not {name} text (byte {e.start})") from None
    parser = ET.XMLParser(encoding="utf-8")  # overrides the declaration: the text is UTF-8 now
    parser.feed(text.encode("utf-8"))
    return parser.close()


def _book(root: Path, title: str, problem: Problems, pages: PageCache, inputs: list[Path]) -> list[Sample]:
    xml = root / "annotations" / f"{title}.xml"
    shown = display_name(xml)
    inputs.append(xml)
    try:
        tree = _parse(read_regular(xml))
    except OSError as e:
        problem(f"{shown}: cannot read the book's annotation: {e.strerror or e}")
        return []
    except ET.ParseError as e:
        line, column = e.position
        problem(f"{shown}:{line}: broken XML (column {column}): {e}; the book {title!r} is left out")
        return []
    except ValueError as e:
        problem(f"{shown}: cannot read the XML: {e}; the book {title!r} is left out")
        return []
    if tree.find("./pages/page") is None:
        problem(f"{shown}: no <pages><page> in the book {title!r}: not a Manga109 annotation")
        return []
    samples, seen = [], set()
    for page in tree.iterfind("./pages/page"):
        index, width, height = (_int(page, k) for k in ("index", "width", "height"))
        if index is None or not width or not height or width < 0 or height < 0:
            problem(f"{shown}: a <page> without whole-number index, width and height: {dict(page.attrib)}")
            continue
        image = root / "images" / title / f"{index:03d}.jpg"
        inputs.append(image)
        for text in page.iterfind("./text"):
            where = f"{shown}: page {index}, text {text.attrib.get('id', '?')}"
            box = [_int(text, k) for k in ("xmin", "ymin", "xmax", "ymax")]
            if None in box:
                problem(f"{where}: the box needs whole-number xmin, ymin, xmax and ymax")
                continue
            x1, y1, x2, y2 = box
            if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
                problem(f"{where}: the box {box} is outside the {width}x{height} page")
                continue
            label = text.text or ""
            if not label:
                problem(f"{where}: the text is empty")
                continue
            if not image.is_file():
                problem(f"{where}: page image not found: {display_name(image)}")
                continue
            crop = (max(x1 - MARGIN, 0), max(y1 - MARGIN, 0), min(x2 + MARGIN, width), min(y2 + MARGIN, height))
            sample_id = f"{title}/{index:03d}/{text.attrib.get('id') or f'{x1},{y1},{x2},{y2}'}"
            if sample_id in seen:
                problem(f"{where}: the id {sample_id!r} is used twice")
                continue
            seen.add(sample_id)
            samples.append(Sample(sample_id, label, where, _cutter(pages, image, (width, height), crop)))
    return samples


def _cutter(pages: PageCache, image: Path, size: tuple[int, int], crop: tuple[int, int, int, int]):
    def load() -> Image.Image:
        page = pages.get(image, lambda: _page(image, size))
        return page.crop(crop)

    return load


def _page(image: Path, size: tuple[int, int]) -> Image.Image:
    page = load_decoded(image).convert("RGB")
    if page.size != size:
        raise DataError(f"{display_name(image)} is {page.size[0]}x{page.size[1]}, but its annotation says "
                        f"{size[0]}x{size[1]}: the boxes would not match")  # fmt: skip
    return page
