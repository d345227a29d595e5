"""Volumes to ``.mokuro`` files, as mokuro 0.2.x writes them, resumable page by page.

A volume is a folder of page images (searched recursively) or a ``.cbz``/``.zip`` of them; its
pages are the files with suffix ``.jpg .jpeg .png .webp .avif``, in natural sort order (``2.jpg``
before ``10.jpg``). ``VOLUME.mokuro`` is written beside the volume. A folder with no page images
directly in it is a library: its volumes are found by ``find_volumes`` (``library``).

Resume: each page's result is written, as soon as it is read, to ``VOLUME.mokuro-cache/`` beside
the volume: one small JSON file per page, written to a temporary name and renamed, so a kill leaves
whole files only. An entry records the page's size and modification time (a zip member's CRC) and
the reader's settings; a run reuses the entries that still match and reads the rest. The
``.mokuro`` is written to a temporary file and renamed; when every page was read the cache is
removed. A page that cannot be read is reported and left out, and the cache keeps the others. A
volume is done when its ``.mokuro`` holds every page; until then each run reads what is missing.

Hostile inputs stay with their page or volume: any archive member may be encrypted, compressed
with an unknown method, corrupt, duplicated or a zip bomb (refused above ``max_member_bytes``
before it is inflated); any name may be undecodable (``names``); any cache entry may be garbage
(read again); any write may fail (the volume is reported, nothing half-written is left). One run
at a time works on a volume: ``VOLUME.mokuro.lock`` (``locks``).

Several ranks (``mlx.launch``, see ``distributed``) share a volume's pages left to read; each
caches its own, and rank 0 writes the ``.mokuro`` once all are done.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..atomic_files import remove_folder_of, remove_stale_temporaries, write_atomic
from ..distributed import Ranks
from ..errors import InvalidImageError, MangaOcrError
from ..images import load_page
from ..locks import LockedError, RunLock
from ..names import display_name, member_display_name, member_raw_name, name_bytes
from .page import MOKURO_VERSION, Page

PAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".avif")
ARCHIVE_SUFFIXES = (".cbz", ".zip")
MAX_MEMBER_BYTES = 256 * 2**20  # the default limit on an archive member's declared (inflated) size
ENCRYPTED = 0x1  # zip general purpose flag bit 0


class VolumeError(MangaOcrError):
    """A volume that cannot be read at all (missing, not a folder or archive, corrupt, no pages)."""


def natural_key(path: str) -> list:
    """Sort key that orders numbers by value: ``p2.jpg`` before ``p10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path)]


def walk_files(root: Path, problems: list[str]) -> Iterator[str]:
    """The files under ``root`` as relative names with ``/``, following links to folders but
    entering each real folder once (a link to an ancestor cannot loop). A folder that cannot be
    listed is added to ``problems``, in words, and its files are not given."""
    seen: set[tuple[int, int]] = set()
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        try:
            info = os.stat(folder)
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            problems.append(f"cannot list {display_name(folder)}: {e.strerror or e}")
            continue
        for entry in entries:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                stack.append((f"{prefix}{entry.name}/", Path(entry.path)))
            else:
                yield prefix + entry.name


@dataclass
class Volume:
    """A folder or archive of page images. ``pages`` are the pages' names as text (``names``),
    unique, in natural order; ``notes`` what was found odd without failing the volume (duplicate
    archive members); ``problems`` what could not be listed (the volume is then incomplete)."""

    path: Path
    pages: list[str]
    _sources: dict[str, str | zipfile.ZipInfo] = field(default_factory=dict, repr=False)
    _archive: zipfile.ZipFile | None = None
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    max_member_bytes: int = MAX_MEMBER_BYTES

    @classmethod
    def open(cls, path: str | Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> Volume:
        """Open a volume; ``VolumeError`` when it is missing, not a folder or archive, not a
        readable zip, or holds no pages. ``max_member_bytes`` bounds an archive member's size."""
        path = Path(path)
        shown = display_name(path)
        try:
            is_dir = path.is_dir()
            exists = is_dir or path.exists()
        except OSError as e:
            raise VolumeError(f"cannot open the volume {shown}: {e.strerror or e}") from None
        if not exists:
            raise VolumeError(f"volume not found: {shown}")
        sources: dict[str, str | zipfile.ZipInfo] = {}
        notes: list[str] = []
        problems: list[str] = []
        archive = None
        if is_dir:
            for name in walk_files(path, problems):
                if Path(name).suffix.lower() in PAGE_SUFFIXES:
                    _add_unique(sources, display_name(name), name, notes, shown)
        elif path.suffix.lower() in ARCHIVE_SUFFIXES:
            try:
                archive = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
                why = getattr(e, "strerror", None) or e
                raise VolumeError(f"{shown} is not a readable zip archive: {why}") from None
            duplicates: list[str] = []
            for info in archive.infolist():
                name = member_display_name(info)
                if info.is_dir() or name.startswith("__MACOSX/") or Path(name).suffix.lower() not in PAGE_SUFFIXES:
                    continue
                if name in sources:
                    duplicates.append(name)
                sources[name] = info  # the last copy, as unzip leaves it
            if duplicates:
                notes.append(
                    f"{shown}: {len(duplicates)} member name(s) appear more than once (first: {duplicates[0]}); "
                    "the last copy of each is read, as unzip extracts it"
                )
        else:
            raise VolumeError(f"a volume is a folder of images or a .cbz/.zip, got {shown}")
        if not sources and not problems:
            if archive is not None:
                archive.close()
            raise VolumeError(f"no page images ({' '.join(PAGE_SUFFIXES)}) in {shown}")
        pages = sorted(sources, key=natural_key)
        return cls(path, pages, sources, archive, notes, problems, max_member_bytes)

    @property
    def name(self) -> str:
        """The volume's file name without an archive's suffix (its ``.mokuro``'s name)."""
        return self.path.stem if self._archive is not None else self.path.name

    @property
    def shown(self) -> str:
        return display_name(self.path)

    @property
    def mokuro_path(self) -> Path:
        return self.path.parent / f"{self.name}.mokuro"

    @property
    def cache_folder(self) -> Path:
        return self.path.parent / f"{self.name}.mokuro-cache"

    @property
    def lock_path(self) -> Path:
        return self.path.parent / f"{self.name}.mokuro.lock"

    def key(self, page: str) -> bytes:
        """The page's name as the bytes on disk or in the archive: what the cache keys it by."""
        source = self._sources[page]
        return member_raw_name(source) if isinstance(source, zipfile.ZipInfo) else name_bytes(source)

    def load(self, page: str) -> Image.Image:
        """A page as a decoded, upright RGB PIL image, or ``InvalidImageError`` naming the page."""
        source = self._sources[page]
        where = f"{self.shown}: {page}"
        if not isinstance(source, zipfile.ZipInfo):
            return load_page(self.path / source)
        if source.flag_bits & ENCRYPTED:
            raise InvalidImageError(
                f"{where}: the member is encrypted (password-protected); only unencrypted archives are read"
            )
        if source.file_size > self.max_member_bytes:
            raise InvalidImageError(
                f"{where}: the member inflates to {source.file_size:,} bytes, over the {self.max_member_bytes:,}-byte "
                "limit on an archive member (--max-member-mb); not read (a zip bomb?)"
            )
        try:
            with self._archive.open(source) as f:
                data = f.read(self.max_member_bytes + 1)
        except NotImplementedError as e:
            raise InvalidImageError(f"{where}: the member cannot be inflated here: {e}") from None
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, RuntimeError, ValueError) as e:
            raise InvalidImageError(f"{where}: cannot read the member (corrupt archive?): {e}") from None
        try:
            return load_page(data)
        except InvalidImageError as e:
            raise InvalidImageError(f"{where}: {e}") from None

    def stamp(self, page: str) -> list[int]:
        """What identifies a page's content cheaply: size and mtime (a zip member: size and CRC).
        ``OSError`` when a page file cannot be looked at."""
        source = self._sources[page]
        if isinstance(source, zipfile.ZipInfo):
            return [source.file_size, source.CRC]
        info = (self.path / source).stat()
        return [info.st_size, info.st_mtime_ns]

    def close(self) -> None:
        if self._archive is not None:
            self._archive.close()


def _add_unique(sources: dict, shown: str, name: str, notes: list[str], volume: str) -> None:
    """Add a page under its shown name; two files that show alike (a CP932 name beside the same
    name in UTF-8) keep the second's bytes escaped."""
    if shown in sources:
        shown = os.fsencode(name).decode("utf-8", "backslashreplace")
        if shown in sources:
            notes.append(f"{volume}: {shown} is left out: another page has the same name as text")
            return
    sources[shown] = name


class PageCache:
    """The per-page results of one volume, one JSON file per page (see the module docstring).
    Any entry may be garbage (hand-edited, another version's, a disk error): it is then ignored
    and the page read again."""

    def __init__(self, volume: Volume, settings: str):
        self.volume, self.settings, self.folder = volume, settings, volume.cache_folder

    def file(self, page: str) -> Path:
        return self.folder / (hashlib.sha1(self.volume.key(page)).hexdigest()[:16] + ".json")

    def get(self, page: str) -> Page | None:
        try:
            entry = json.loads(self.file(page).read_text(encoding="utf-8"))
            stamp = self.volume.stamp(page)
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict):
            return None
        if (entry.get("page"), entry.get("stamp"), entry.get("settings")) != (page, stamp, self.settings):
            return None
        try:
            return Page.from_dict(entry.get("result"))
        except ValueError:
            return None

    def put(self, page: str, stamp: list[int], result: Page) -> None:
        """Write a page's entry; ``OSError`` when it cannot be written (nothing is left half-written)."""
        self.folder.mkdir(exist_ok=True)
        entry = {"page": page, "stamp": stamp, "settings": self.settings, "result": result.to_dict()}
        write_atomic(self.file(page), json.dumps(entry))

    def remove_temporaries(self) -> None:
        if self.folder.is_dir():
            for tmp in self.folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def clear(self) -> str | None:
        """Remove the entries (and temporary files a kill left); the folder goes when nothing else
        is in it. Returns a message when something else was found and left in place."""
        return remove_folder_of(self.folder, r"[0-9a-f]{16}\.json|\..*\.tmp")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _uuid_from(path: Path, key: str) -> str | None:
    data = _read_json(path)
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def title_uuid(volume: Volume) -> str:
    """The title's uuid: this volume's earlier ``.mokuro``'s, else a sibling volume's, else a new one."""
    for path in [volume.mokuro_path, *sorted(volume.path.parent.glob("*.mokuro"))]:
        found = _uuid_from(path, "title_uuid")
        if found:
            return found
    return str(uuid.uuid4())


def mokuro_state(volume: Volume) -> tuple[bool, str | None]:
    """Whether the volume's ``.mokuro`` is done: there, readable, and holding every page of the
    volume. The message says why an existing file does not count (it is then read again)."""
    path = volume.mokuro_path
    if not path.exists():
        return False, None
    data = _read_json(path)
    pages = data.get("pages") if isinstance(data, dict) else None
    if not isinstance(pages, list) or not all(isinstance(p, dict) for p in pages):
        return False, f"{display_name(path)} is not a .mokuro file (not mokuro's JSON): the volume is read again"
    have = {p.get("img_path") for p in pages}
    return not volume.problems and all(page in have for page in volume.pages), None


def mokuro_document(volume: Volume, pages: dict[str, Page]) -> dict:
    """The ``.mokuro`` content: the volume's header and the read pages in page order."""
    return {
        "version": MOKURO_VERSION,
        "title": display_name(volume.path.resolve().parent.name),
        "title_uuid": title_uuid(volume),
        "volume": display_name(volume.name),
        "volume_uuid": _uuid_from(volume.mokuro_path, "volume_uuid") or str(uuid.uuid4()),
        "pages": [pages[p].to_mokuro(p) for p in volume.pages if p in pages],
    }


# What rank 0 decided about a volume, shared with the other ranks.
READ, DONE, LOCKED, UNWRITABLE, UNOPENED = range(5)


@dataclass
class VolumeResult:
    path: Path | None  # the .mokuro written (rank 0), or None
    pages: int = 0  # pages in the volume
    read: int = 0  # pages read and saved in this run (by every rank)
    cached: int = 0  # pages taken from the cache
    failed: int = 0  # pages that could not be read (left out)
    by_rank: list[list[int]] = field(default_factory=list)  # [read, failed] by each rank in this run
    status: str = "written"  # written, done before (skipped), locked, failed (could not write or open)


def _decide(volume: Volume, lock: RunLock, force: bool, report, note) -> int:
    """Rank 0: take the volume's lock, then whether to read it."""
    try:
        lock.acquire()
    except LockedError as e:
        report(str(e))
        return LOCKED
    except OSError as e:
        report(f"{volume.shown}: cannot write beside the volume ({display_name(lock.path)}): {e.strerror or e}")
        return UNWRITABLE
    done, message = mokuro_state(volume)
    if done and not force:
        note(f"{display_name(volume.mokuro_path)} exists: skipping {volume.shown} (--force reads it again)")
        return DONE
    if message:
        note(message)
    remove_stale_temporaries(volume.path.parent, volume.mokuro_path.name)
    try:
        PageCache(volume, "").remove_temporaries()
    except OSError:
        pass
    return READ


def read_volume(reader, volume: Volume | None, settings: str, batch_size: int = 16,
                report: Callable[[str], None] = print, progress=None, ranks: Ranks | None = None,
                force: bool = False, wait: float = 0.0, note: Callable[[str], None] = print,
                ) -> VolumeResult:  # fmt: skip
    """Read a volume's pages not yet cached, ``batch_size`` pages at a time, cache each, then write
    its ``.mokuro``. ``report`` gets one message per failure (a page, the volume, a write);
    ``note`` what is said without failing (skipped, garbage replaced); ``progress`` (an object with
    ``total`` and ``advance(count)``) the pages this rank is done with, as they are.

    First rank 0 takes the volume's lock (waiting up to ``wait`` seconds for another run) and
    looks at its ``.mokuro``: a done volume is skipped unless ``force``. ``volume`` None means this
    rank could not open it (every rank then skips it).

    With several ``ranks``, every rank calls this for the same volume: they agree on the pages left,
    rank r reads its share of them into the cache, and after a barrier rank 0 writes the ``.mokuro``
    from the cache (the other ranks return ``path=None``)."""
    ranks = ranks or Ranks()
    lock = RunLock(volume.lock_path, wait, volume.shown) if volume is not None else None
    code = UNOPENED
    if ranks.rank == 0 and volume is not None:
        code = _decide(volume, lock, force, report, note)
    rows = ranks.gather([code, int(volume is not None)])
    code = rows[0][0]
    try:
        if code == READ and not all(row[1] for row in rows):
            if ranks.rank == 0:
                blind = [r for r, row in enumerate(rows) if not row[1]]
                report(f"{volume.shown}: rank(s) {', '.join(map(str, blind))} cannot open the volume; skipped")
            code = UNOPENED
        result = VolumeResult(None, pages=len(volume.pages) if volume is not None else 0)
        if code != READ:
            result.status = {DONE: "done before", LOCKED: "locked"}.get(code, "failed")
            return result
        return _read(reader, volume, settings, batch_size, report, progress, ranks, note, result)
    finally:
        if lock is not None:
            lock.release()


def _read(reader, volume: Volume, settings: str, batch_size: int, report, progress, ranks: Ranks, note,
          result: VolumeResult) -> VolumeResult:  # fmt: skip
    cache = PageCache(volume, settings)
    done: dict[str, Page] = {}
    todo = []
    for page in volume.pages:
        cached = cache.get(page)
        if cached is None:
            todo.append(page)
        else:
            done[page] = cached
    result.cached = len(done)
    if ranks.rank == 0:
        for message in volume.notes:
            note(message)
        for problem in volume.problems:
            report(f"{volume.shown}: {problem}; its pages are left out")
    ranks.agree(f"the pages of {volume.shown} left to read", "\n".join([volume.shown, *todo]))  # before writes
    mine = ranks.take(todo)
    if progress:
        progress.total = len(mine) + (len(done) if ranks.size == 1 else 0)
        if done and ranks.size == 1:
            progress.advance(len(done))

    names: list[tuple[str, list[int]]] = []  # the pages handed to the reader, in order, with their stamps
    failed, saved = 0, 0
    write_error: str | None = None

    def readable() -> Iterator[Image.Image]:
        nonlocal failed
        for page in mine:
            if write_error:
                return
            try:
                stamp = volume.stamp(page)
                image = volume.load(page)
            except (InvalidImageError, OSError) as e:
                failed += 1
                report(str(e) if isinstance(e, InvalidImageError) else f"{volume.shown}: {page}: {e.strerror or e}")
                if progress:
                    progress.advance(1)
                continue
            names.append((page, stamp))
            yield image

    for i, read in enumerate(reader.read_pages(readable(), batch_size)):  # the reader groups the pages
        page, stamp = names[i]
        try:
            cache.put(page, stamp, read)
        except OSError as e:
            write_error = f"cannot write {display_name(cache.file(page))}: {e.strerror or e}"
            break
        saved += 1
        done[page] = read
        ranks.wrote()
        if progress:
            progress.advance(1)
    if write_error:
        report(f"{volume.shown}: {write_error}; {saved} page(s) saved, the rest are read by the next run")
    rows = ranks.gather([saved, failed, int(bool(write_error))])  # also the barrier: every rank's pages are cached
    result.by_rank = [row[:2] for row in rows]
    result.read = sum(r[0] for r in rows)
    result.failed = sum(r[1] for r in rows)
    if any(row[2] for row in rows):
        result.status = "failed"
        if ranks.rank == 0 and not write_error:
            report(f"{volume.shown}: another rank could not write its pages; the .mokuro is not written")
        return result
    if ranks.rank != 0:
        return result
    for page in todo:
        if page not in done:
            found = cache.get(page)  # read by another rank
            if found is not None:
                done[page] = found
    missing = len(volume.pages) - len(done)
    if missing != result.failed:
        report(
            f"{display_name(volume.cache_folder)}: {missing - result.failed} page(s) the other ranks read are not in "
            "the cache; every host needs the volume at the same path, on storage they share. Run the command again"
        )
        result.status = "failed"
        return result
    try:
        write_atomic(volume.mokuro_path, json.dumps(mokuro_document(volume, done), ensure_ascii=False))
    except OSError as e:
        report(f"{volume.shown}: cannot write {display_name(volume.mokuro_path)}: {e.strerror or e}; the pages stay "
               "in the cache for the next run")  # fmt: skip
        result.status = "failed"
        return result
    result.path = volume.mokuro_path
    if not result.failed and not volume.problems:
        try:
            message = cache.clear()
        except OSError as e:
            message = f"{display_name(cache.folder)}: could not be removed: {e.strerror or e}"
        if message:
            note(message)
    return result
