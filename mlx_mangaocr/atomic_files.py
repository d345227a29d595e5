"""Writing a file so that a kill leaves the old content or the new, never a torn mix."""

from __future__ import annotations

import os
import socket
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder, synced, and a rename.
    The temporary name carries the host and process, so ranks on several hosts never share one."""
    tmp = path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
