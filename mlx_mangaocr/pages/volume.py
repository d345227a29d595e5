"""Volumes to ``.mokuro`` files, as mokuro 0.2.x writes them, resumable page by page.

A volume is a folder of page images (searched recursively) or a ``.cbz``/``.zip`` of them; its
pages are the files with suffix ``.jpg .jpeg .png .webp .avif``, in natural sort order (``2.jpg``
before ``10.jpg``). ``VOLUME.mokuro`` is written beside the volume. A folder with no page images
directly in it is a library: its volumes are found by ``find_volumes``.

Resume: each page's result is written, as soon as it is read, to ``VOLUME.mokuro-cache/`` beside
the volume: one small JSON file per page, written to a temporary name and renamed, so a kill leaves
whole files only. An entry records the page's size and modification time (a zip member's CRC) and
the reader's settings; a run reuses the entries that still match and reads the rest. The
``.mokuro`` is written to a temporary file and renamed; when every page was read the cache is
removed. A page that cannot be read is reported and left out, and the cache keeps the others.

Several ranks (``mlx.launch``, see ``distributed``) share a volume's pages left to read; each
caches its own, and rank 0 writes the ``.mokuro`` once all are done.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..atomic_files import write_atomic
from ..distributed import Ranks
from ..errors import InvalidImageError, MangaOcrError
from ..images import load_rgb
from .page import MOKURO_VERSION, Page

PAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".avif")
ARCHIVE_SUFFIXES = (".cbz", ".zip")


class VolumeError(MangaOcrError):
    """A volume that cannot be read at all (missing, not a folder or archive, corrupt, no pages)."""


def natural_key(path: str) -> list:
    """Sort key that orders numbers by value: ``p2.jpg`` before ``p10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path)]


@dataclass
class Volume:
    """A folder or archive of page images."""

    path: Path
    pages: list[str]  # relative paths with "/", natural order
    _archive: zipfile.ZipFile | None = None

    @classmethod
    def open(cls, path: str | Path) -> Volume:
        path = Path(path)
        if not path.exists():
            raise VolumeError(f"volume not found: {path}")
        if path.is_dir():
            pages = [p.relative_to(path).as_posix() for p in path.rglob("*")
                     if p.suffix.lower() in PAGE_SUFFIXES and p.is_file()]  # fmt: skip
            archive = None
        elif path.suffix.lower() in ARCHIVE_SUFFIXES:
            try:
                archive = zipfile.ZipFile(path)
                bad = archive.testzip()
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise VolumeError(f"{path} is not a readable zip archive: {e}") from None
            if bad is not None:
                raise VolumeError(f"{path} is corrupt: the member {bad} fails its CRC check")
            pages = [i.filename for i in archive.infolist()
                     if not i.is_dir() and Path(i.filename).suffix.lower() in PAGE_SUFFIXES
                     and not i.filename.startswith("__MACOSX/")]  # fmt: skip
        else:
            raise VolumeError(f"a volume is a folder of images or a .cbz/.zip, got {path}")
        if not pages:
            raise VolumeError(f"no page images ({' '.join(PAGE_SUFFIXES)}) in {path}")
        return cls(path, sorted(pages, key=natural_key), archive)

    @property
    def name(self) -> str:
        return self.path.stem if self.path.is_file() else self.path.name

    @property
    def mokuro_path(self) -> Path:
        return self.path.parent / f"{self.name}.mokuro"

    @property
    def cache_folder(self) -> Path:
        return self.path.parent / f"{self.name}.mokuro-cache"

    def load(self, page: str):
        """A page as a decoded RGB PIL image, or ``InvalidImageError`` naming the page."""
        if self._archive is None:
            return load_rgb(self.path / page)
        try:
            data = self._archive.read(page)
        except (OSError, zipfile.BadZipFile, KeyError) as e:
            raise InvalidImageError(f"{self.path}: cannot read {page}: {e}") from None
        try:
            return load_rgb(data)
        except InvalidImageError as e:
            raise InvalidImageError(f"{self.path}: {page}: {e}") from None

    def stamp(self, page: str) -> list[int]:
        """What identifies a page's content cheaply: size and mtime (a zip member: size and CRC)."""
        if self._archive is not None:
            info = self._archive.getinfo(page)
            return [info.file_size, info.CRC]
        stat = (self.path / page).stat()
        return [stat.st_size, stat.st_mtime_ns]

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()


def find_volumes(path: str | Path) -> list[Path]:
    """The volumes ``path`` names: itself when it is a file (an archive) or a folder with page
    images directly in it; any other folder is a library, and gives the volumes in it and its
    subfolders (each by the same rule), in natural order. Raises ``VolumeError`` for a missing path
    or a library without volumes."""
    path = Path(path)
    if not path.exists():
        raise VolumeError(f"volume not found: {path}")
    found = _volumes_in(path)
    if not found:
        raise VolumeError(f"no volumes in {path}: no page images ({' '.join(PAGE_SUFFIXES)}), .cbz or .zip in it")
    return found


def _volumes_in(path: Path) -> list[Path]:
    if not path.is_dir():
        return [path]
    children = sorted(path.iterdir(), key=lambda p: natural_key(p.name))
    if any(c.suffix.lower() in PAGE_SUFFIXES and c.is_file() for c in children):
        return [path]
    found = []
    for child in children:
        if child.is_dir() and not child.name.startswith("."):
            found += _volumes_in(child)
        elif child.suffix.lower() in ARCHIVE_SUFFIXES and child.is_file():
            found.append(child)
    return found


class PageCache:
    """The per-page results of one volume, one JSON file per page (see the module docstring)."""

    def __init__(self, volume: Volume, settings: str):
        self.volume, self.settings, self.folder = volume, settings, volume.cache_folder

    def _file(self, page: str) -> Path:
        return self.folder / (hashlib.sha1(page.encode()).hexdigest()[:16] + ".json")

    def get(self, page: str) -> Page | None:
        try:
            entry = json.loads(self._file(page).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if (entry.get("page"), entry.get("stamp"), entry.get("settings")) != (
            page, self.volume.stamp(page), self.settings):  # fmt: skip
            return None
        return Page.from_dict(entry["result"])

    def put(self, page: str, result: Page) -> None:
        self.folder.mkdir(exist_ok=True)
        entry = {"page": page, "stamp": self.volume.stamp(page), "settings": self.settings, "result": result.to_dict()}
        write_atomic(self._file(page), json.dumps(entry, ensure_ascii=False))

    def clear(self) -> None:
        if self.folder.is_dir():
            for f in self.folder.iterdir():
                f.unlink()
            self.folder.rmdir()


def _uuid_from(path: Path, key: str) -> str | None:
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


def title_uuid(volume: Volume) -> str:
    """The title's uuid: this volume's earlier ``.mokuro``'s, else a sibling volume's, else a new one."""
    for path in [volume.mokuro_path, *sorted(volume.path.parent.glob("*.mokuro"))]:
        found = _uuid_from(path, "title_uuid")
        if found:
            return found
    return str(uuid.uuid4())


def mokuro_document(volume: Volume, pages: dict[str, Page]) -> dict:
    """The ``.mokuro`` content: the volume's header and the read pages in page order."""
    return {
        "version": MOKURO_VERSION,
        "title": volume.path.resolve().parent.name,
        "title_uuid": title_uuid(volume),
        "volume": volume.name,
        "volume_uuid": _uuid_from(volume.mokuro_path, "volume_uuid") or str(uuid.uuid4()),
        "pages": [pages[p].to_mokuro(p) for p in volume.pages if p in pages],
    }


@dataclass
class VolumeResult:
    path: Path | None  # the .mokuro written (rank 0), or None
    pages: int = 0  # pages in the volume
    read: int = 0  # pages read in this run (by every rank)
    cached: int = 0  # pages taken from the cache
    failed: int = 0  # pages that could not be read (left out)
    by_rank: list[list[int]] = field(default_factory=list)  # [read, failed] by each rank in this run


def read_volume(reader, volume: Volume, settings: str, batch_size: int = 16,
                report: Callable[[str], None] = print, progress=None, ranks: Ranks | None = None,
                ) -> VolumeResult:  # fmt: skip
    """Read a volume's pages not yet cached, ``batch_size`` pages at a time, cache each, then write
    its ``.mokuro``. ``report`` gets one message per page that could not be read; ``progress`` (an
    object with ``total`` and ``advance(count)``, such as the CLI's bar) the pages this rank is done
    with (read, cached or failed) as they are.

    With several ``ranks``, every rank calls this for the same volume: they agree on the pages left,
    rank r reads its share of them into the cache, and after a barrier rank 0 writes the ``.mokuro``
    from the cache (the other ranks return ``path=None``)."""
    ranks = ranks or Ranks()
    cache = PageCache(volume, settings)
    result = VolumeResult(None, pages=len(volume.pages))
    done: dict[str, Page] = {}
    todo = []
    for page in volume.pages:
        cached = cache.get(page)
        if cached is None:
            todo.append(page)
        else:
            done[page] = cached
    result.cached = len(done)
    ranks.agree(f"the pages of {volume.path} left to read", "\n".join([str(volume.path), *todo]))  # before writes
    mine = ranks.take(todo)
    if progress:
        progress.total = len(mine) + (len(done) if ranks.size == 1 else 0)
        if done and ranks.size == 1:
            progress.advance(len(done))

    names: list[str] = []  # the pages handed to the reader, in order
    failed = 0

    def readable() -> Iterator[Image.Image]:
        nonlocal failed
        for page in mine:
            try:
                image = volume.load(page)
            except InvalidImageError as e:
                failed += 1
                report(str(e))
                if progress:
                    progress.advance(1)
                continue
            names.append(page)
            yield image

    for i, read in enumerate(reader.read_pages(readable(), batch_size)):  # the reader groups the pages
        cache.put(names[i], read)
        done[names[i]] = read
        ranks.wrote()
        if progress:
            progress.advance(1)
    result.by_rank = ranks.gather([len(names), failed])  # also the barrier: every rank's pages are cached
    result.read = sum(r[0] for r in result.by_rank)
    result.failed = sum(r[1] for r in result.by_rank)
    if ranks.rank != 0:
        return result
    for page in todo:
        if page not in done:
            found = cache.get(page)  # read by another rank
            if found is not None:
                done[page] = found
    missing = len(volume.pages) - len(done)
    if missing != result.failed:
        raise VolumeError(
            f"{volume.cache_folder}: {missing - result.failed} page(s) the other ranks read are not in the cache; "
            "every host needs the volume at the same path, on storage they share. Run the command again"
        )
    document = mokuro_document(volume, done)
    write_atomic(volume.mokuro_path, json.dumps(document, ensure_ascii=False))
    result.path = volume.mokuro_path
    if not result.failed:
        cache.clear()
    return result
