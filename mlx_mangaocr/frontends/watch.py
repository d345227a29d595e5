"""Watching a folder for new or changed images, as manga-ocr's directory mode does."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from ..core.images import image_files


def _snapshot(folder: Path) -> dict[Path, tuple[int, int]]:
    out = {}
    for path in image_files(folder):
        try:
            stat = path.stat()
        except OSError:  # removed between listing and stat
            continue
        out[path] = (stat.st_mtime_ns, stat.st_size)
    return out


def watch_folder(
    folder: str | Path,
    on_image: Callable[[Path], None],
    interval: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    existing: bool = False,
) -> None:
    """Call ``on_image(path)`` for each image that appears in ``folder`` or changes, once its size
    and modification time have held still for one ``interval`` (a file still being written is
    left for later). A file that fails (say, written in two goes) is tried again when it changes.
    Images already there at start are skipped unless ``existing``. Runs until ``stop()``."""
    folder = Path(folder)
    done = {} if existing else _snapshot(folder)
    pending: dict[Path, tuple[int, int]] = {}
    while not stop():
        for path, signature in _snapshot(folder).items():
            if done.get(path) == signature:
                continue
            if pending.get(path) != signature:  # new or still changing: look again next time
                pending[path] = signature
                continue
            del pending[path]
            done[path] = signature
            on_image(path)
        time.sleep(interval)
