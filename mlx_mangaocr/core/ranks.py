"""One job split over several processes (ranks) started by ``mlx.launch``, on one Mac or several.

``mlx.launch`` starts the same command on every host and gives each process its rank; a plain run
is rank 0 of 1 and none of this costs anything. The commands that use it (``--mokuro`` and
``--jsonl --output FILE``) follow one pattern:

1. every rank builds the same manifest (sorted, from the same paths) and works out what is left;
   ``agree`` checks that every rank saw the same thing, since a host that sees other files would
   otherwise skip or repeat work without a word;
2. rank r takes ``take(items)``: every ``size``-th item from the r-th;
3. each rank writes only its own results, each as soon as it has it;
4. a barrier (``gather``); then rank 0 assembles the outputs from what every rank wrote.

The results of other ranks are read from the file system, so every host must see the inputs and
the outputs at the same paths, on storage they share; ``check_shared`` tests that before any work.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from .errors import MangaOcrError
from .names import display_name

T = TypeVar("T")


class DistributedError(MangaOcrError):
    """The ranks cannot work together: no connection, or they see different inputs or outputs."""


class Ranks:
    """This process's place among the ranks, and the few collective steps the commands need."""

    def __init__(self, group=None):
        self.group = group
        self.rank = group.rank() if group is not None else 0
        self.size = group.size() if group is not None else 1
        self.host = socket.gethostname()

    @classmethod
    def init(cls) -> Ranks:
        """Join the ranks ``mlx.launch`` started (``mx.distributed.init()``); alone, rank 0 of 1."""
        import mlx.core as mx

        hostfile = os.environ.get("MLX_HOSTFILE")
        if hostfile and Path(hostfile).is_file() and not Path(hostfile).read_text().strip():
            return cls()  # mlx.launch with one host writes an empty hostfile, which init() cannot parse
        try:
            group = mx.distributed.init()
        except RuntimeError as e:
            raise DistributedError(f"could not connect to the other ranks: {e}") from None
        return cls(group)

    @property
    def label(self) -> str:
        return f"rank {self.rank}/{self.size}"

    def take(self, items: Sequence[T]) -> list[T]:
        """This rank's share: items r, r + size, r + 2 size, ... (balanced to within one item)."""
        return list(items[self.rank :: self.size])

    def gather(self, values: Sequence[int]) -> list[list[int]]:
        """Every rank's ``values`` (same length on all, each fitting in 32 bits), by rank. Also a barrier."""
        if self.size == 1:
            return [list(values)]
        import mlx.core as mx

        gathered = mx.distributed.all_gather(mx.array(list(values), dtype=mx.int32), group=self.group, stream=mx.cpu)
        return gathered.reshape(self.size, len(values)).tolist()

    def barrier(self) -> None:
        self.gather([0])

    def agree(self, what: str, value: str) -> None:
        """Raise ``DistributedError`` on every rank unless every rank passes the same ``value``."""
        if self.size == 1:
            return
        digest = hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()[:16]
        words = [int.from_bytes(digest[i : i + 4], "little", signed=True) for i in range(0, 16, 4)]
        rows = self.gather(words)
        differ = [r for r, row in enumerate(rows) if row != rows[0]]
        if differ:
            raise DistributedError(
                f"the ranks disagree on {what}: rank 0 and rank(s) {', '.join(map(str, differ))} see different "
                "files. Every host needs the same inputs at the same paths, on storage they share"
            )

    def check_shared(self, folders: Iterable[Path]) -> None:
        """Raise ``DistributedError`` unless every rank sees the files rank 0 writes in ``folders``
        (where results are written and assembled). A folder rank 0 cannot write in is left out
        here: what is to be written there fails on its own, as in a plain run."""
        if self.size == 1:
            return
        folders = sorted({Path(f).resolve() for f in folders})
        nonce = self.gather([int.from_bytes(os.urandom(4), "little", signed=True)])[0][0]  # rank 0's
        marks = [folder / f".mlx-mangaocr-shared-{nonce & 0xFFFFFFFF:08x}" for folder in folders]
        written = []
        if self.rank == 0:
            for mark in marks:
                try:
                    mark.write_text(self.host, encoding="utf-8")
                    written.append(True)
                except OSError:
                    written.append(False)
        self.barrier()  # every mark is written before anyone looks
        seen = written if self.rank == 0 else [m.exists() for m in marks]
        digest = hashlib.sha256(bytes(seen)).digest()[:16]
        rows = self.gather([int.from_bytes(digest[i : i + 4], "little", signed=True) for i in range(0, 16, 4)])
        if self.rank == 0:
            for mark, done in zip(marks, written, strict=True):
                if done:
                    mark.unlink(missing_ok=True)
        blind = [r for r, row in enumerate(rows) if row != rows[0]]
        if blind:
            unseen = [m.parent for m, s in zip(marks, seen, strict=True) if not s]
            where = f": {display_name(unseen[0])}" if unseen and self.rank in blind else ""
            raise DistributedError(
                f"rank(s) {', '.join(map(str, blind))} do not see files rank 0 writes{where}. Every host needs the "
                "inputs and outputs at the same paths, on storage they share (a network volume mounted at one path)"
            )

    def summary(self, counts: list[list[int]]) -> str:
        """``counts`` ([read, failed] by rank, from ``gather``) for rank 0's last line."""
        per_rank = "; ".join(f"rank {r}: {c[0]} read, {c[1]} failed" for r, c in enumerate(counts))
        return f"by {self.size} rank(s) [{per_rank}]"
