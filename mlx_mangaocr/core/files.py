"""Reading the small files a run reads back (JSON of model folders, ``.mokuro`` files, cache
entries, JSON Lines): regular files only, so a FIFO or a device put where a file should be cannot
make a run wait forever, and garbage of any shape (not JSON, nested too deep) is an answer, never a
crash."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from .errors import ModelLoadError


def read_regular(path: Path) -> bytes:
    """The bytes of ``path``; ``OSError`` when it cannot be read or is not a regular file (a FIFO
    is opened without blocking and refused)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IsADirectoryError(0, "not a regular file", str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def load_json(path: Path):
    """The JSON value in ``path``, or None for anything else: missing, unreadable, not a regular
    file, not UTF-8, not JSON, or nested too deep to parse."""
    try:
        return json.loads(read_regular(path).decode("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None


def read_json(path: Path) -> dict:
    """A model folder's JSON object, or ``ModelLoadError`` naming the file and the problem."""
    try:
        data = json.loads(read_regular(path).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        why = "nested too deep" if isinstance(e, RecursionError) else e
        raise ModelLoadError(f"cannot read {path}: {why}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    return data
