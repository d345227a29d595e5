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

A lock file is never followed through a link nor written when it is anything but a plain file of
its own (a link to an input, a second name of one, a folder): that is refused, naming it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import stat
import time
from pathlib import Path

from .errors import MangaOcrError
from .names import display_name


class LockedError(MangaOcrError):
    """Another run holds the lock on an output, or the lock file is not one."""


class RunLock:
    """``with RunLock(path, wait):`` holds ``path`` (created if missing) for this run; raises
    ``LockedError`` when another run still holds it after ``wait`` seconds (or it is not a plain
    file), ``OSError`` when the lock file cannot be made (a read-only folder, a full disk)."""

    def __init__(self, path: Path, wait: float = 0.0, what: str = ""):
        self.path, self.wait, self.what = Path(path), wait, what
        self._fd: int | None = None

    def _open(self) -> tuple[int, bool]:
        """The lock file, open without following a link; (fd, writable)."""
        flags = os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd, writable = os.open(self.path, os.O_RDWR | flags, 0o644), True
        except PermissionError:  # another user's lock file: flock works on a read-only one too
            fd, writable = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)), False
        except IsADirectoryError:
            raise self._not_a_lock("a folder") from None
        except OSError as e:
            if e.errno == errno.ELOOP:  # O_NOFOLLOW met a link
                raise self._not_a_lock("a link") from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            os.close(fd)
            raise self._not_a_lock("not a plain file" if not stat.S_ISREG(info.st_mode) else "a second name of a file")
        return fd, writable

    def _not_a_lock(self, why: str) -> LockedError:
        return LockedError(f"{display_name(self.path)} is where the lock of {self.what or 'this output'} goes, and it "
                           f"is {why}: nothing is written through it; remove it")  # fmt: skip

    def acquire(self) -> RunLock:
        deadline = time.monotonic() + self.wait
        while True:
            fd, writable = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another run"
                os.close(fd)
                if time.monotonic() >= deadline:
                    what = f" on {self.what}" if self.what else ""
                    waited = f" after waiting {self.wait:g} s" if self.wait else ""
                    raise LockedError(
                        f"another run is working{what}: {display_name(self.path)} is held ({holder}){waited}. "
                        "Let it finish, or run with --wait SECONDS"
                    ) from None
                time.sleep(min(0.2, max(deadline - time.monotonic(), 0.01)))
                continue
            except BaseException:
                os.close(fd)
                raise
            if not _same_file(self.path, fd):  # the holder removed it as we opened it: take the new one
                os.close(fd)
                continue
            self._fd = fd
            if writable:
                try:
                    os.ftruncate(fd, 0)
                    note = f"host {socket.gethostname()}, pid {os.getpid()}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                    os.pwrite(fd, note.encode(), 0)
                except BaseException:  # a full disk: no lock file left behind
                    self.release()
                    raise
            return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self.path, self._fd):
                self.path.unlink()  # while held: a waiting run then takes a new file
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _same_file(path: Path, fd: int) -> bool:
    try:
        a, b = os.lstat(path), os.fstat(fd)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
