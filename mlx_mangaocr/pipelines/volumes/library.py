"""Libraries: the volumes in a tree of folders, found as a real manga collection holds them.

A folder with page images directly in it is a volume; any other folder is a library, whose
archives and subfolders are volumes or libraries by the same rule, in natural order. Links to
folders are followed, but each real folder is entered once, so links to an ancestor cannot make
discovery loop. A folder that cannot be listed is named in the problems, and the rest goes on.
Two volumes whose ``.mokuro`` would be the same file (``vol/`` beside ``vol.cbz``) clash: both are
reported and skipped (``split_clashes``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...core.names import display_name
from .volume import ARCHIVE_SUFFIXES, PAGE_SUFFIXES, VolumeError, is_mac_leftover, natural_key


def find_volumes(path: str | Path, problems: list[str] | None = None) -> list[Path]:
    """The volumes ``path`` names: itself when it is a file (an archive) or a folder with page
    images directly in it; any other folder is a library, and gives the volumes in it and its
    subfolders (each by the same rule), in natural order. Raises ``VolumeError`` for a missing path
    or a library without volumes. Folders that cannot be listed go to ``problems`` (given), else
    the first one raises ``VolumeError``."""
    path = Path(path)
    try:
        exists = path.exists()
    except OSError as e:
        raise VolumeError(f"cannot open {display_name(path)}: {e.strerror or e}") from None
    if not exists:
        raise VolumeError(f"volume not found: {display_name(path)}")
    found: list[Path] = []
    mine: list[str] = []
    _volumes_in(path, found, set(), mine)
    found = once_each(found)
    if mine and problems is None:
        raise VolumeError(mine[0])
    if problems is not None:
        problems += mine
    if not found and not mine:
        raise VolumeError(
            f"no volumes in {display_name(path)}: no page images ({' '.join(PAGE_SUFFIXES)}), .cbz or .zip in it"
        )
    return found


def _volumes_in(path: Path, found: list[Path], seen: set[tuple[int, int]], problems: list[str]) -> None:
    try:
        is_dir = path.is_dir()
    except OSError:
        is_dir = False
    if not is_dir:
        found.append(path)
        return
    try:
        info = os.stat(path)
        children = sorted(path.iterdir(), key=lambda p: natural_key(display_name(p.name)))
    except OSError as e:
        problems.append(f"cannot list {display_name(path)}: {e.strerror or e}")
        return
    if any(c.suffix.lower() in PAGE_SUFFIXES and not is_mac_leftover(c.name) and _is_file(c) for c in children):
        found.append(path)  # a volume: found by every way to it, once_each keeps one
        return
    if (info.st_dev, info.st_ino) in seen:  # a library already searched, by another way (a link)
        return
    seen.add((info.st_dev, info.st_ino))
    for child in children:
        if child.name.startswith(".") or is_mac_leftover(child.name):
            continue
        if _is_dir(child):
            _volumes_in(child, found, seen, problems)
        elif child.suffix.lower() in ARCHIVE_SUFFIXES and _is_file(child):
            found.append(child)


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:
        return False


def once_each(paths: list[Path]) -> list[Path]:
    """Each volume once, in order of first appearance: of several ways to one volume (links), the
    one without a link, so that its ``.mokuro`` lands beside the real folder, not beside an alias."""
    chosen: dict[str, Path] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real not in chosen or (_via_link(chosen[real]) and not _via_link(path)):
            chosen[real] = path
    order = list(dict.fromkeys(os.path.realpath(p) for p in paths))
    return [chosen[real] for real in order]


def _via_link(path: Path) -> bool:
    return os.path.realpath(path) != os.path.abspath(path)


def mokuro_path(path: Path) -> Path:
    """Where a volume's ``.mokuro`` goes (see ``Volume.mokuro_path``), without opening it."""
    name = path.stem if path.suffix.lower() in ARCHIVE_SUFFIXES and _is_file(path) else path.name
    return path.parent / f"{name}.mokuro"


def split_clashes(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The volumes whose ``.mokuro`` no other volume shares, and a message for each group that
    shares one. Names are compared case-folded, as macOS's file systems compare them."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(os.path.normcase(str(mokuro_path(path).absolute())).casefold(), []).append(path)
    keep, messages = [], []
    for path in paths:
        group = groups[os.path.normcase(str(mokuro_path(path).absolute())).casefold()]
        if len(group) == 1:
            keep.append(path)
        elif path == group[0]:
            messages.append(
                f"{' and '.join(display_name(p) for p in group)} would both write {display_name(mokuro_path(path))}: "
                "skipping them; rename one"
            )
    return keep, messages
