"""A labelled crop (``Sample``), a source of them (``Dataset``), and what bad data does (``Problems``).

Labels sit in memory, so training can bucket by length; images are read only when asked for, so
a set of 100k crops does not. Crops cut from pages share the last page loaded (``PageCache``, one a
thread): a source lists the boxes of a page together.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ...core.errors import InvalidImageError, MangaOcrError


class DataError(MangaOcrError, ValueError):
    """Bad data: the message names the file and the line, box or page. ``skippable``: a bad sample
    (``--skip-bad`` leaves such out), not a source that cannot be read at all."""

    def __init__(self, message: str, skippable: bool = False):
        super().__init__(message)
        self.skippable = skippable


NOT_TEXT = "is not valid Unicode (it holds a lone surrogate)"  # a label or id that ``core.names.is_text`` refuses


@dataclass(frozen=True)
class Sample:
    """One labelled crop. ``id`` is unique within its source; ``text`` the raw label; ``where`` the
    file and line (or book, page and box) that messages name; ``file`` the image file when the crop
    is a file of its own."""

    id: str
    text: str
    where: str
    _load: Callable[[], Image.Image] = field(repr=False, compare=False)
    file: Path | None = None

    def image(self) -> Image.Image:
        """The crop as a loaded PIL image; ``DataError`` naming ``where`` when it cannot be read."""
        try:
            return self._load()
        except DataError as e:
            raise DataError(str(e) if self.where in str(e) else f"{self.where}: {e}", skippable=True) from None
        except InvalidImageError as e:
            raise DataError(f"{self.where}: {e}", skippable=True) from None
        except OSError as e:
            raise DataError(f"{self.where}: cannot read the image: {e.strerror or e}", skippable=True) from None


@dataclass
class Dataset:
    """The samples of one source, in its order. ``kind`` is one of ``jsonl``, ``csv``, ``synth``,
    ``manga109``, ``mokuro``; ``skipped`` the bad samples left out (``--skip-bad``), each named;
    ``books`` the Manga109-s books read, else None; ``inputs`` every file it reads (so that an
    output is never written over one)."""

    path: str
    kind: str
    samples: list[Sample]
    skipped: list[str] = field(default_factory=list)
    books: list[str] | None = None
    closers: list[Callable[[], None]] = field(default_factory=list, repr=False)
    inputs: list[Path] = field(default_factory=list, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def describe(self) -> dict:
        """What a result records of its source: path, kind, samples, skipped (and books)."""
        out = {"path": self.path, "kind": self.kind, "samples": len(self.samples), "skipped": len(self.skipped)}
        if self.books is not None:
            out["books"] = list(self.books)
        return out

    def close(self) -> None:
        """Close what the source holds open (a volume's archive)."""
        for close in self.closers:
            close()
        self.closers.clear()


class Problems:
    """Bad data found while indexing a source: raised at once as ``DataError``, or, with
    ``skip_bad``, kept (``found``) and left out."""

    def __init__(self, skip_bad: bool):
        self.skip_bad = skip_bad
        self.found: list[str] = []

    def __call__(self, message: str) -> None:
        if not self.skip_bad:
            raise DataError(message, skippable=True)
        self.found.append(message)


_NOTHING = object()


class PageCache:
    """The last page loaded, by key, one for each thread: the boxes of one page, read in turn,
    load it once, and threads that read crops of other pages (training's image workers, in a
    shuffled order) load them at once rather than one after another."""

    def __init__(self):
        self._local = threading.local()

    def get(self, key, load: Callable[[], Image.Image]) -> Image.Image:
        last = self._local
        if getattr(last, "key", _NOTHING) != key:
            last.page, last.key, last.error = None, key, None
            try:
                last.page = load()
            except DataError as e:  # every box of a bad page fails alike, without reading it again
                last.error = e
        if last.error is not None:
            raise last.error
        return last.page
