"""Volumes and libraries to ``.mokuro`` files: each volume a sharded, resumable job (``jobs``).

A volume's pages not yet in its results (``results``) are shared by the ranks and read
``batch_size`` at a time; each page's result is written as soon as it is read; then rank 0 writes
``VOLUME.mokuro`` (a temporary file and a rename) and removes the results when every page was read.
A volume is done when its ``.mokuro`` holds every page (``mokuro.mokuro_state``): it is skipped
unless ``force``. A failure stays with its page or volume: it is reported through the callback and
the library goes on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ...core.atomic_files import remove_stale_temporaries, write_atomic
from ...core.errors import InvalidImageError
from ...core.names import display_name
from ...core.ranks import Ranks
from ..jobs import DONE, WORK, Counts, JobCallback, run_job
from ..pages.page import Page
from .library import find_volumes, once_each, split_clashes
from .mokuro import mokuro_document, mokuro_state
from .results import PageResults
from .volume import MAX_MEMBER_BYTES, Volume, VolumeError


class LibraryCallback(JobCallback):
    """What reading a library reports, beyond a job's: each volume's outcome."""

    def on_volume(self, summary: VolumeSummary) -> None:
        """A volume is finished with (written by rank 0, done before, refused or failed)."""


@dataclass
class VolumeSummary:
    path: Path  # the volume
    status: str  # "written", "done before", "refused", "failed"
    mokuro: Path | None = None  # the .mokuro written (rank 0)
    pages: int = 0  # pages in the volume
    cached: int = 0  # pages taken from the results of an earlier run
    by_rank: list[list[int]] = field(default_factory=list)  # [read, failed] by each rank in this run

    @property
    def read(self) -> int:
        return sum(r[0] for r in self.by_rank)

    @property
    def failed(self) -> int:
        return sum(r[1] for r in self.by_rank)


@dataclass
class LibraryResult:
    volumes: int = 0  # volumes found (clashing ones left out)
    written: int = 0
    done_before: int = 0
    cached: int = 0
    failed: bool = False  # anything failed: a page, a volume, a folder
    by_rank: list[list[int]] = field(default_factory=list)  # [read, failed] by rank, over every volume


class VolumeJob:
    """One volume as a sharded job (``jobs.Job``)."""

    beside = "the volume"

    def __init__(self, reader, volume: Volume, settings: str, batch_size: int = 16, force: bool = False,
                 page_group: int | None = None):  # fmt: skip
        self.reader, self.volume, self.batch_size, self.force = reader, volume, batch_size, force
        self.page_group = page_group
        self.results = PageResults(volume, settings)
        self.lock_path, self.what = volume.lock_path, volume.shown
        self.done: dict[str, Page] = {}
        self.todo: list[str] = []
        self.cached = 0
        self.written: Path | None = None

    def done_before(self, callback: JobCallback) -> bool:
        """Whether the volume's ``.mokuro`` holds every page already (and ``force`` is not set)."""
        if self.force or not mokuro_state(self.volume)[0]:
            return False
        mokuro = display_name(self.volume.mokuro_path)
        callback.on_note(f"{mokuro} exists: skipping {self.volume.shown} (--force reads it again)")
        return True

    def prepare(self, callback: JobCallback) -> int:
        volume = self.volume
        if self.done_before(callback):  # again, holding the lock: another run may just have finished it
            return DONE
        done, message = mokuro_state(volume)
        if message:
            callback.on_note(message)
        remove_stale_temporaries(volume.path.parent, volume.mokuro_path.name)
        self.results.remove_temporaries()
        for message in self.results.tidy():
            callback.on_note(message)
        for note in volume.notes:
            callback.on_note(note)
        for problem in volume.problems:
            callback.on_error(f"{volume.shown}: {problem}; its pages are left out")
        return WORK

    def pending(self) -> list[str]:
        for page in self.volume.pages:
            found = self.results.get(page)
            if found is None:
                self.todo.append(page)
            else:
                self.done[page] = found
        self.cached = len(self.done)
        return self.todo

    def work(self, items: list[str], callback: JobCallback, wrote) -> Counts:
        volume, counts = self.volume, Counts()
        callback.on_start(display_name(volume.name), len(items), self.cached)
        names: list[tuple[str, list[int]]] = []  # the pages handed to the reader, in order, with their stamps

        def readable() -> Iterator[Image.Image]:
            for page in items:
                if counts.write_error:
                    return
                try:
                    stamp = volume.stamp(page)
                    image = volume.load(page)
                except (InvalidImageError, OSError) as e:
                    counts.failed += 1
                    callback.on_error(str(e) if isinstance(e, InvalidImageError) else f"{volume.shown}: {page}: "
                                      f"{e.strerror or e}")  # fmt: skip
                    callback.on_advance(1)
                    continue
                names.append((page, stamp))
                yield image

        for i, read in enumerate(self.reader.read_pages(readable(), self.batch_size, self.page_group)):
            page, stamp = names[i]
            try:
                self.results.put(page, stamp, read)
            except OSError as e:
                counts.write_error = f"cannot write {display_name(self.results.file(page))}: {e.strerror or e}"
                break
            counts.done += 1
            self.done[page] = read
            wrote()
            callback.on_advance(1)
        return counts

    def finish(self, rows: list[list[int]], callback: JobCallback) -> bool:
        volume = self.volume
        for page in self.todo:
            if page not in self.done:
                found = self.results.get(page)  # read by another rank
                if found is not None:
                    self.done[page] = found
        failed = sum(r[1] for r in rows)
        missing = len(volume.pages) - len(self.done)
        if missing != failed:
            callback.on_error(
                f"{display_name(self.results.folder)}: {missing - failed} page(s) the other ranks read are not in "
                "it; every host needs the volume at the same path, on storage they share. Run the command again"
            )
            return False
        try:
            write_atomic(volume.mokuro_path, json.dumps(mokuro_document(volume, self.done), ensure_ascii=False))
        except OSError as e:
            callback.on_error(f"{volume.shown}: cannot write {display_name(volume.mokuro_path)}: {e.strerror or e}; "
                              "the pages read stay in its results for the next run")  # fmt: skip
            return False
        self.written = volume.mokuro_path
        if not failed and not volume.problems:
            try:
                message = self.results.clear()
            except OSError as e:
                message = f"{display_name(self.results.folder)}: could not be removed: {e.strerror or e}"
            if message:
                callback.on_note(message)
        return True


def read_library(reader, inputs: list[str | Path], settings: str, callback: LibraryCallback,
                 ranks: Ranks | None = None, batch_size: int = 16, force: bool = False, wait: float = 0.0,
                 max_member_bytes: int = MAX_MEMBER_BYTES, page_group: int | None = None) -> LibraryResult:  # fmt: skip
    """Every volume that ``inputs`` (volumes and libraries) name, in turn, each to its ``.mokuro``.
    ``settings`` is what a page's result depends on (models and options, as text). With several
    ``ranks`` every rank calls this with the same arguments and the pages of each volume are
    shared; ``callback`` hears about every page, volume and folder that fails, and each outcome.
    ``page_group`` pages are read and held at once (``PageReader.read_pages``)."""
    ranks = ranks or Ranks()
    result = LibraryResult(by_rank=[[0, 0] for _ in range(ranks.size)])
    paths: list[Path] = []
    problems: list[str] = []
    lead = ranks.rank == 0  # reports what every rank sees alike
    for item in inputs:
        try:
            paths += find_volumes(item, problems)
        except VolumeError as e:
            result.failed = True
            if lead:
                callback.on_error(str(e))
    for problem in problems:
        result.failed = True
        if lead:
            callback.on_error(problem)
    paths = once_each(paths)  # a volume named twice (or by a link) is read once
    ranks.agree("the volumes to read", "\n".join(display_name(p) for p in paths))
    paths, clashes = split_clashes(paths)
    for message in clashes:
        result.failed = True
        if lead:
            callback.on_error(message)
    ranks.check_shared({p.parent for p in paths})
    result.volumes = len(paths)
    for path in paths:
        summary = _read_one(reader, path, settings, callback, ranks, batch_size, force, wait, max_member_bytes,
                            page_group)  # fmt: skip
        if summary.status == "done before":
            result.done_before += 1
        elif summary.status == "written":
            result.written += 1
            result.cached += summary.cached
            for total, counts in zip(result.by_rank, summary.by_rank, strict=True):
                total[0], total[1] = total[0] + counts[0], total[1] + counts[1]
        if summary.status not in ("written", "done before") or summary.failed:
            result.failed = True
        callback.on_volume(summary)
    return result


def _read_one(reader, path: Path, settings: str, callback: JobCallback, ranks: Ranks, batch_size: int, force: bool,
              wait: float, max_member_bytes: int, page_group: int | None) -> VolumeSummary:  # fmt: skip
    volume = None
    try:
        volume = Volume.open(path, max_member_bytes=max_member_bytes)
    except VolumeError as e:
        if ranks.rank == 0:
            callback.on_error(str(e))
    try:
        if volume is None:
            run_job(_Unopened(path), ranks, callback, ready=False)  # the other ranks' gather
            return VolumeSummary(path, "failed")
        job = VolumeJob(reader, volume, settings, batch_size, force, page_group)
        outcome = run_job(job, ranks, callback, wait)
        status = "written" if outcome.status == "worked" else outcome.status  # "worked": a rank other than 0
        return VolumeSummary(path, status, job.written, len(volume.pages), job.cached, outcome.by_rank)
    finally:
        if volume is not None:
            volume.close()


class _Unopened:
    """A volume this rank could not open: it only takes part in rank 0's decision to skip it."""

    beside = "the volume"

    def __init__(self, path: Path):
        self.lock_path, self.what = path.with_name(path.name + ".lock"), display_name(path)
