"""The sharded, resumable job: one piece under both the crop job (``crop_job``) and volumes
(``volumes``), on one process or over the ranks ``mlx.launch`` starts (``core.ranks``).

Every job runs the same steps:

1. rank 0 takes the output's lock (``core.locks``; waiting up to ``wait`` seconds for another run)
   and prepares the output (``Job.prepare``): it may say the job is done already or refuse it;
   every rank follows rank 0's answer;
2. every rank works out the items left (``Job.pending``, read from what is written) and the ranks
   check that they agree (``Ranks.agree``), since a host that saw other files would skip or repeat
   work without a word;
3. rank r takes items r, r + n, r + 2n, ... (``Ranks.take``) and works them (``Job.work``),
   writing each result as soon as it has it, so a kill loses nothing written;
4. a barrier that also gathers each rank's counts; then rank 0 assembles the output from what
   every rank wrote (``Job.finish``) and the lock is released.

A job reports through a ``JobCallback`` (as mlx-lm's ``TrainingCallback``), never by printing:
the front end decides what to show.

Test-only fault hook: ``MLX_MANGAOCR_TEST_FAULT=RANK:N`` makes rank RANK kill itself (SIGKILL)
right after it has written its N-th result, as a crashed or unplugged host would.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..core.locks import LockedError, RunLock
from ..core.names import display_name
from ..core.ranks import Ranks

# What rank 0 decides before any work, shared with every rank.
WORK, DONE, REFUSED = range(3)


class JobCallback:
    """What a job reports; each method does nothing unless overridden."""

    def on_error(self, message: str) -> None:
        """A failure (a page, a crop, a volume, a write), named once."""

    def on_note(self, message: str) -> None:
        """Something said without failing (a volume done before, a file left in place)."""

    def on_start(self, label: str, total: int, done: int) -> None:
        """This rank starts its share: ``total`` items in all, ``done`` of them already done."""

    def on_advance(self, count: int) -> None:
        """This rank is done with ``count`` more items (read, failed or taken from what was written)."""


@dataclass
class Counts:
    """One rank's work on a job."""

    done: int = 0  # items worked and written
    failed: int = 0  # items that could not be worked (reported)
    write_error: str = ""  # why this rank stopped writing, if it did


@dataclass
class JobResult:
    status: str  # "written" (by rank 0), "worked" (another rank: rank 0 wrote it), "done before", "refused", "failed"
    by_rank: list[list[int]] = field(default_factory=list)  # [done, failed] of every rank
    pending: int = 0  # items that were left to do when the job started

    @property
    def done(self) -> int:
        return sum(r[0] for r in self.by_rank)

    @property
    def failed(self) -> int:
        return sum(r[1] for r in self.by_rank)


class Job(Protocol):
    """One output written by a sharded job."""

    lock_path: Path  # the lock file of the output
    what: str  # the input or output, as messages name it
    beside: str  # where the lock goes, in words ("the volume", "the output")

    def prepare(self, callback: JobCallback) -> int:
        """Rank 0, holding the lock: ready the output; ``WORK``, ``DONE`` (nothing to do) or
        ``REFUSED`` (reported through ``callback``)."""

    def pending(self) -> list[str]:
        """Every rank, after ``prepare``: the keys of the items left, the same on every rank."""

    def work(self, items: list[str], callback: JobCallback, wrote) -> Counts:
        """This rank's share: work each item, write its result, call ``wrote()`` after each."""

    def finish(self, rows: list[list[int]], callback: JobCallback) -> bool:
        """Rank 0, after every rank's work: assemble the output; False if it could not."""


class FaultHook:
    """Counts the results this rank writes; the test-only fault hook fires here (module docstring)."""

    def __init__(self, rank: int):
        self.written = 0
        spec = os.environ.get("MLX_MANGAOCR_TEST_FAULT")
        who, _, after = (spec or "").partition(":")
        self.after = int(after) if spec and int(who) == rank else None

    def __call__(self, count: int = 1) -> None:
        self.written += count
        if self.after is not None and self.written >= self.after:
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # not reached


def run_job(job: Job, ranks: Ranks, callback: JobCallback, wait: float = 0.0, ready: bool = True) -> JobResult:
    """Run ``job`` on every rank (each rank calls this for the same job). ``ready`` False says this
    rank cannot take part (it could not open the input): every rank then skips the job."""
    lock = RunLock(job.lock_path, wait, job.what)
    code = REFUSED
    if ranks.rank == 0 and ready:
        code = _take(job, lock, callback)
    rows = ranks.gather([code, int(ready)])
    code = rows[0][0]
    try:
        if code == WORK and not all(row[1] for row in rows):
            if ranks.rank == 0:
                blind = [r for r, row in enumerate(rows) if not row[1]]
                callback.on_error(f"{job.what}: rank(s) {', '.join(map(str, blind))} cannot open it; skipped")
            code = REFUSED
        if code != WORK:
            return JobResult("done before" if code == DONE else "refused")
        todo = job.pending()
        ranks.agree(f"what is left of {job.what}", "\n".join([job.what, *todo]))  # before anyone writes
        counts = job.work(ranks.take(todo), callback, FaultHook(ranks.rank))
        if counts.write_error:
            callback.on_error(f"{job.what}: {counts.write_error}; what was written is kept for the next run")
        rows = ranks.gather([counts.done, counts.failed, int(bool(counts.write_error))])  # also the barrier
        result = JobResult("worked", [row[:2] for row in rows], len(todo))
        if any(row[2] for row in rows):
            if ranks.rank == 0 and not counts.write_error:
                callback.on_error(f"{job.what}: another rank could not write its results; not assembled")
            result.status = "failed"
        else:
            written = job.finish(result.by_rank, callback) if ranks.rank == 0 else False
            if ranks.gather([int(written)])[0][0]:  # every rank waits for rank 0's output, and learns it
                result.status = "written" if ranks.rank == 0 else "worked"
            else:
                result.status = "failed"
        return result
    finally:
        lock.release()


def _take(job: Job, lock: RunLock, callback: JobCallback) -> int:
    done_before = getattr(job, "done_before", None)  # a read-only look first: a done output needs no lock
    if done_before is not None and done_before(callback):
        return DONE
    try:
        lock.acquire()
    except LockedError as e:
        callback.on_error(str(e))
        return REFUSED
    except OSError as e:
        where = display_name(lock.path)
        callback.on_error(f"{job.what}: cannot write beside {job.beside} ({where}): {e.strerror or e}")
        return REFUSED
    try:
        code = job.prepare(callback)
    except OSError as e:
        callback.on_error(f"{job.what}: {e.strerror or e}")
        code = REFUSED
    except BaseException:
        lock.release()
        raise
    if code != WORK:
        lock.release()
    return code
