"""One run at a time on an output: a lock file held with ``flock``.

Two runs that write the same output (a volume's ``.mokuro`` and its cache, a ``--jsonl --output``
FILE and its parts) would read the same work twice and delete each other's files. Each output has
a lock file beside it (``VOLUME.mokuro.lock``, ``FILE.lock``); the run that holds it works, another
run refuses (naming the lock file and who holds it) or waits for it (``wait`` seconds). The lock
belongs to a run, not a process: of the ranks of one ``mlx.launch`` run, rank 0 takes it for all.

The kernel drops an ``flock`` when its process dies, so a lock file a killed run left behind is
free and taken over. ``flock`` holds between processes of one machine on any local file system.
Between machines it holds only where the network file system carries ``flock`` to the server
(see the README); the file's content (host, process, start time) names the holder either way.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

from .errors import MangaOcrError


class LockedError(MangaOcrError):
    """Another run holds the lock on an output."""


class RunLock:
    """``with RunLock(path, wait):`` holds ``path`` (created if missing) for this run; raises
    ``LockedError`` when another run still holds it after ``wait`` seconds, ``OSError`` when the
    lock file cannot be made (a read-only folder, a full disk)."""

    def __init__(self, path: Path, wait: float = 0.0, what: str = ""):
        self.path, self.wait, self.what = Path(path), wait, what
        self._file = None

    def acquire(self) -> RunLock:
        deadline = time.monotonic() + self.wait
        while True:
            f = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 (held until release)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read(200).strip() or "another run"
                f.close()
                if time.monotonic() >= deadline:
                    what = f" on {self.what}" if self.what else ""
                    waited = f" after waiting {self.wait:g} s" if self.wait else ""
                    raise LockedError(
                        f"another run is working{what}: {self.path} is held ({holder}){waited}. "
                        "Let it finish, or run with --wait SECONDS"
                    ) from None
                time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
                continue
            except BaseException:
                f.close()
                raise
            if _same_file(self.path, f):  # else the holder removed it as we opened it: take the new one
                f.seek(0)
                f.truncate()
                f.write(f"host {socket.gethostname()}, pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}")
                f.flush()
                self._file = f
                return self
            f.close()

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while held: a waiting run then takes a new file
        except OSError:
            pass
        self._file.close()
        self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(path: Path, f) -> bool:
    try:
        a, b = os.stat(path), os.fstat(f.fileno())
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    except FileNotFoundError:
        return False
