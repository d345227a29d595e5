"""A volume: a folder of page images (searched recursively) or a ``.cbz``/``.zip`` of them. Its
pages are the files with a page suffix (``core.images.PAGE_SUFFIXES``), in natural sort order
(``2.jpg`` before ``10.jpg``), each named as text (``core.names``).

Any member of an archive may be hostile: encrypted, compressed with an unknown method, corrupt,
duplicated or a zip bomb (refused above ``max_member_bytes`` before it is inflated); each fails
alone, as its page. Links to folders are followed, each real folder once; a folder that cannot be
listed is a problem of the volume (it is then not done).
"""

from __future__ import annotations

import os
import re
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ...core.errors import InvalidImageError, MangaOcrError
from ...core.images import IMAGE_SUFFIXES, load_page
from ...core.names import (
    UTF8_FLAG,
    display_name,
    member_display_name,
    member_raw_name,
    name_bytes,
    unique_display_names,
    unique_names,
)

PAGE_SUFFIXES = IMAGE_SUFFIXES  # the one set (core.images): pages are images like any other
ARCHIVE_SUFFIXES = (".cbz", ".zip")
MAX_MEMBER_BYTES = 256 * 2**20  # the default limit on an archive member's declared (inflated) size
MAX_MEMBERS = 100_000  # an archive listing more members is refused unread: zipfile keeps ~1 KB a member
ENCRYPTED = 0x1  # zip general purpose flag bit 0


class VolumeError(MangaOcrError):
    """A volume that cannot be read at all (missing, not a folder or archive, corrupt, no pages)."""


def natural_key(path: str) -> list:
    """Sort key that orders numbers by value: ``p2.jpg`` before ``p10.jpg``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path)]


MAC_LEFTOVERS = ("__MACOSX", ".DS_Store")  # what macOS's archiver and Finder leave; ._NAME files too


def is_mac_leftover(name: str) -> bool:
    return name in MAC_LEFTOVERS or name.startswith("._")


def walk_files(root: Path, problems: list[str], notes: list[str] | None = None) -> Iterator[str]:
    """The files under ``root`` as relative names with ``/``, following links to folders inside
    ``root`` but entering each real folder once (a link to an ancestor cannot loop); a link to a
    folder outside ``root`` is not followed (``notes`` says so: it would take in other volumes, or
    the whole disk). macOS's leftovers (``__MACOSX``, ``._NAME``) are skipped. A folder that cannot
    be listed is added to ``problems``, in words, and its files are not given."""
    inside = os.path.realpath(root)
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
            if is_mac_leftover(entry.name):
                continue
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir and entry.is_symlink():
                target = os.path.realpath(entry.path)
                if target != inside and not target.startswith(inside.rstrip(os.sep) + os.sep):
                    if notes is not None:
                        notes.append(f"{display_name(root)}: {display_name(prefix + entry.name)} links to a folder "
                                     f"outside the volume ({display_name(target)}): not followed")  # fmt: skip
                    continue
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
            every = list(walk_files(path, problems, notes))
            files = [name for name in every if Path(name).suffix.lower() in PAGE_SUFFIXES]
            avif = [name for name in every if Path(name).suffix.lower() == ".avif" and name not in files]
            if avif:
                notes.append(f"{shown}: {len(avif)} .avif page(s) left out (first: {display_name(avif[0])}): this "
                             "Pillow cannot decode AVIF; pip install 'pillow>=11.2'")  # fmt: skip
            sources = {shown_name: name for name, shown_name in unique_display_names(files).items()}
        elif path.suffix.lower() in ARCHIVE_SUFFIXES:
            if not path.is_file():  # a FIFO or a device would make zipfile wait forever
                raise VolumeError(f"{shown} is not a regular file, so not a readable archive")
            try:
                count = member_count(path)
            except OSError as e:
                raise VolumeError(f"{shown} is not a readable zip archive: {e.strerror or e}") from None
            if count is not None and count > MAX_MEMBERS:
                raise VolumeError(f"{shown} lists {count:,} members, over the {MAX_MEMBERS:,} a volume may have: not "
                                  "read (listing them alone would take about 1 KB of memory each)")  # fmt: skip
            try:
                archive = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as e:
                why = getattr(e, "strerror", None) or e
                raise VolumeError(f"{shown} is not a readable zip archive: {why}") from None
            duplicates: list[str] = []
            members: dict[bytes, zipfile.ZipInfo] = {}
            for info in archive.infolist():
                name = member_display_name(info)
                if info.is_dir() or is_mac_leftover(name.split("/")[0]) or is_mac_leftover(name.rsplit("/", 1)[-1]):
                    continue
                if Path(name).suffix.lower() not in PAGE_SUFFIXES:
                    continue
                if member_raw_name(info) in members:
                    duplicates.append(name)
                members[member_raw_name(info)] = info  # the last copy, as unzip leaves it
            exact = {raw: info.flag_bits & UTF8_FLAG or raw.isascii() for raw, info in members.items()}
            shown_names = unique_names([(raw, member_display_name(i), bool(exact[raw])) for raw, i in members.items()])
            sources = {shown_names[raw]: info for raw, info in members.items()}
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

    def file(self, page: str) -> Path:
        """The file a page is read from: its own in a folder, the archive for a member."""
        source = self._sources[page]
        return self.path if isinstance(source, zipfile.ZipInfo) else self.path / source

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
        return load_page(data, name=where)

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


def member_count(path: Path) -> int | None:
    """How many members a zip's end-of-central-directory record declares (zip64's too), read
    before ``zipfile`` lists them all; None when no record is found (zipfile then says why)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 65_557))  # the record (22 bytes) and a comment of at most 65,535
        tail = f.read()
        at = tail.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(tail):
            return None
        (count,) = struct.unpack_from("<H", tail, at + 10)
        if count != 0xFFFF:
            return count
        locator = tail.rfind(b"PK\x06\x07", 0, at)  # zip64: the locator points at the zip64 record
        if locator < 0:
            return None
        (offset,) = struct.unpack_from("<Q", tail, locator + 8)
        f.seek(offset)
        record = f.read(56)
        if len(record) < 40 or record[:4] != b"PK\x06\x06":
            return None
        return struct.unpack_from("<Q", record, 32)[0]
