"""A volume's page results, kept as they are read: ``VOLUME.mokuro-cache/``, one small JSON file per
page, written under a temporary name and renamed, so a kill leaves whole files only. An entry holds
the page's name, its stamp (size and time; a zip member's size and CRC), the reader's settings and
the result; a run reuses the entries that still match. Any entry may be garbage (hand-edited,
another version's, a disk error): it is then ignored and its page read again. Entries are keyed by
the bytes of the page's name, so a name that is not UTF-8 maps to the same entry on every run.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from ...core.atomic_files import remove_folder_of, write_atomic
from ...core.files import load_json
from ...core.names import display_name
from ..pages.page import Page
from .volume import Volume


class PageResults:
    """The page results of one volume (see the module docstring)."""

    def __init__(self, volume: Volume, settings: str):
        self.volume, self.settings, self.folder = volume, settings, volume.cache_folder

    def file(self, page: str) -> Path:
        return self.folder / (hashlib.sha1(self.volume.key(page)).hexdigest()[:16] + ".json")

    def get(self, page: str) -> Page | None:
        entry = load_json(self.file(page))
        try:
            stamp = self.volume.stamp(page)
        except OSError:
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

    def tidy(self) -> list[str]:
        """Before a run works (holding the lock): what sits at an entry's name and is not a file (a
        folder) is renamed ``NAME.not-an-entry``, so that the entry can be written; a message each."""
        moved = []
        if self.folder.is_dir():
            for path in self.folder.glob("*.json"):
                if re.fullmatch(r"[0-9a-f]{16}\.json", path.name) and (path.is_symlink() or not path.is_file()):
                    path.rename(path.with_name(path.name + ".not-an-entry"))
                    moved.append(f"{display_name(path)} is not a cache entry: renamed {path.name}.not-an-entry")
        return moved

    def remove_temporaries(self) -> None:
        if self.folder.is_dir():
            for tmp in self.folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)

    def clear(self) -> str | None:
        """Remove the entries (and temporary files a kill left); the folder goes when nothing else
        is in it. Returns a message when something else was found and left in place."""
        return remove_folder_of(self.folder, r"[0-9a-f]{16}\.json|\..*\.tmp")
