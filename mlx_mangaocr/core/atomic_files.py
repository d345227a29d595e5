"""Writing a file so that a kill leaves the old content or the new, never a torn mix, and a failed
write (a full disk, a read-only folder) leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from pathlib import Path

from .names import display_name


def temporary_name(path: Path) -> Path:
    """The temporary file ``write_atomic`` writes before renaming it to ``path``. The name carries
    the host and process, so ranks on several hosts never share one."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file in the same
    folder, synced, and a rename. On any failure the temporary file is removed and the error raised."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)

    write_atomic_with(path, write)


def write_atomic_with(path: Path, write, suffix: str = "") -> None:
    """``write(tmp)`` makes the file at a temporary path (ending in ``suffix``, for writers that add
    one), which is then synced and renamed to ``path``; on any failure it is removed and the error
    raised."""
    tmp = temporary_name(path)
    tmp = tmp.with_name(tmp.name + suffix)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def remove_stale_temporaries(folder: Path, name: str) -> int:
    """Remove the temporary files a killed ``write_atomic(folder / name)`` left (any host, any
    process): call it only while holding the output's lock. Returns how many were removed."""
    removed = 0
    with contextlib.suppress(OSError):
        for tmp in folder.glob(f".{_glob_escape(name)}.*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


def remove_folder_of(folder: Path, ours: str) -> str | None:
    """Remove the plain files in ``folder`` whose names match the regular expression ``ours`` (the
    files a run makes there), then the folder when nothing else is in it. Returns a message naming
    what else was found there and left in place, else None."""
    if not folder.is_dir():
        return None
    others = []
    for f in folder.iterdir():
        if re.fullmatch(ours, f.name) and f.is_file() and not f.is_symlink():
            f.unlink(missing_ok=True)
        else:
            others.append(f.name)
    if others:
        return f"{display_name(folder)}: left in place, it holds what runs do not make ({display_name(others[0])})"
    folder.rmdir()
    return None


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)
