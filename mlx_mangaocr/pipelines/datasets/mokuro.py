"""``.mokuro`` volumes as labelled data: each block of each page is a sample, cut from the page as
the page reader cuts a block (``load_page``: upright; the box grown by ``ReadingRules.margin`` times
its shorter side, clamped to the page; a long block whole, not in chunks), and labelled with its
lines joined. The pages are the volume's, beside the ``.mokuro`` as mokuro keeps them: the folder
``NAME/`` or the archive ``NAME.cbz`` (``.zip``) for ``NAME.mokuro``. So volumes whose text a user
corrected become training data."""

from __future__ import annotations

import json
import math
from pathlib import Path

from PIL import Image

from ...core.files import read_regular
from ...core.names import display_name, is_text
from ..pages.crops import grow
from ..pages.reader import ReadingRules
from ..volumes.volume import ARCHIVE_SUFFIXES, Volume, VolumeError
from .samples import NOT_TEXT, DataError, Dataset, PageCache, Problems, Sample


def volume_of(path: Path) -> Path:
    """The pages of ``NAME.mokuro``: ``NAME/``, else ``NAME.cbz`` or ``NAME.zip`` beside it."""
    stem = path.with_suffix("")
    for candidate in [stem, *(stem.with_name(stem.name + s) for s in ARCHIVE_SUFFIXES)]:
        if candidate.exists():
            return candidate
    raise DataError(f"{display_name(path)}: its pages are not beside it: expected the folder {display_name(stem.name)}/"
                    f" or {display_name(stem.name)}.cbz")  # fmt: skip


def read_mokuro(path: Path, problem: Problems, rules: ReadingRules | None = None) -> Dataset:
    """The blocks of a ``.mokuro`` file, page by page, in its order."""
    shown = display_name(path)
    try:
        data = json.loads(read_regular(path).decode("utf-8"))
    except OSError as e:
        raise DataError(f"cannot read {shown}: {e.strerror or e}") from None
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise DataError(f"{shown} is not a .mokuro file: not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("pages"), list):
        raise DataError(f'{shown} is not a .mokuro file: no "pages" list')
    try:
        volume = Volume.open(volume_of(path))
    except VolumeError as e:
        raise DataError(f"{shown}: {e}") from None
    margin = (rules or ReadingRules()).margin
    known, pages, samples = set(volume.pages), PageCache(), []
    for number, page in enumerate(data["pages"], 1):
        name = page.get("img_path") if isinstance(page, dict) else None
        if not isinstance(name, str) or not isinstance(page.get("blocks"), list):
            problem(f'{shown}: page {number} has no "img_path" and "blocks"')
            continue
        size = (page.get("img_width"), page.get("img_height"))
        size = size if all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size) else None
        for index, block in enumerate(page["blocks"]):
            where = f"{shown}: page {number} ({name}), block {index}"
            box = block.get("box") if isinstance(block, dict) else None
            if not (isinstance(box, list) and len(box) == 4 and all(_finite(v) for v in box)):
                problem(f'{where}: no "box" of four finite numbers')
                continue
            lines = block.get("lines")
            if not (isinstance(lines, list) and all(isinstance(line, str) for line in lines)):
                problem(f'{where}: no "lines" list of strings')
                continue
            text = "".join(lines)
            if not text:
                problem(f"{where}: the text is empty")
                continue
            if not is_text(text):
                problem(f"{where}: the text {NOT_TEXT}")
                continue
            x1, y1, x2, y2 = (round(v) for v in box)
            if not (0 <= x1 < x2 and 0 <= y1 < y2) or (size and (x2 > size[0] or y2 > size[1])):
                problem(f"{where}: the box {box} is outside the page")
                continue
            if name not in known:
                problem(f"{where}: the page {name!r} is not in {volume.shown}")
                continue
            cut = _cutter(volume, pages, name, (x1, y1, x2, y2), margin, size)
            samples.append(Sample(f"{display_name(volume.name)}/{name}#{index}", text, where, cut))
    inputs = [path, *dict.fromkeys(volume.file(p) for p in volume.pages)]
    return Dataset(shown, "mokuro", samples, problem.found, closers=[volume.close], inputs=inputs)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _cutter(volume: Volume, pages: PageCache, name: str, box, margin: float, size: tuple[int, int] | None):
    def page() -> Image.Image:
        image = volume.load(name)
        if size is not None and image.size != size:
            raise DataError(f"{volume.shown}: {name} is {image.width}x{image.height}, but the .mokuro says "
                            f"{size[0]}x{size[1]}: its boxes would not match")  # fmt: skip
        return image

    def load() -> Image.Image:
        image = pages.get(name, page)
        width, height = image.size
        if box[2] > width or box[3] > height:
            raise DataError(f"the box {list(box)} is outside the {width}x{height} page")
        return image.crop(grow(box, margin, width, height))

    return load
