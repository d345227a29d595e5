"""Crops to a JSON Lines FILE as a sharded, resumable job (``jobs``; the file format and its parts
are ``jsonl_parts``): each rank appends its records to ``FILE.parts/rank-R.jsonl`` as they come,
and rank 0 writes FILE in input order at the end. A crop counts as done when FILE or a part holds
its text; a run does the rest."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import MangaOcrError
from ..core.names import display_name, unique_display_names
from ..core.ranks import Ranks
from .files import recognize_files
from .jobs import REFUSED, WORK, Counts, JobCallback, JobResult, run_job
from .jsonl_parts import JsonlParts


class CropJob:
    """The crop job over ``paths`` (see the module docstring); ``errors`` are records of inputs that
    are not crops (a folder without images), written by rank 0."""

    beside = "the output"

    def __init__(self, processor, paths: list[str], errors: list[dict], output: str | Path, settings: str,
                 rank: int = 0, batch_size: int = 16, decoding: dict | None = None, force: bool = False):  # fmt: skip
        self.processor, self.errors, self.rank = processor, errors, rank
        self.batch_size, self.decoding, self.force = batch_size, dict(decoding or {}), force
        self.paths = list(dict.fromkeys(paths))  # a crop given twice is read once
        self.names = unique_display_names(self.paths)  # what FILE records each as: no two alike
        self.by_name = {name: path for path, name in self.names.items()}
        self.parts = JsonlParts(output, settings)
        self.lock_path, self.what = self.parts.lock_path, display_name(self.parts.output)

    def prepare(self, callback: JobCallback) -> int:
        try:
            message = self.parts.prepare()
        except MangaOcrError as e:  # FILE is not JSON Lines; something else where the parts go
            callback.on_error(str(e))
            return REFUSED
        if message:
            callback.on_note(message)
        return WORK

    def pending(self) -> list[str]:
        done = self.parts.done(self.force)
        return [self.names[p] for p in self.paths if self.names[p] not in done]

    def work(self, items: list[str], callback: JobCallback, wrote) -> Counts:
        counts = Counts()
        callback.on_start("", len(items), 0)
        try:
            with self.parts.open_part(self.rank) as part:
                if self.rank == 0:
                    for record in self.errors:
                        callback.on_error(record["error"])
                        self.parts.append(part, record)

                def emit(record: dict) -> None:
                    if "error" in record:
                        counts.failed += 1
                        callback.on_error(record["error"])
                    else:
                        counts.done += 1
                    self.parts.append(part, record)
                    wrote()
                    callback.on_advance(1)

                images = [self.by_name[name] for name in items]
                recognize_files(self.processor, images, self.batch_size, self.decoding, emit, items)
        except OSError as e:  # a full disk, a part that cannot be written: what is written so far is whole
            counts.write_error = f"cannot write {display_name(self.parts.part(self.rank))}: {e.strerror or e}"
        return counts

    def finish(self, rows: list[list[int]], callback: JobCallback) -> bool:
        merged = self.parts.merge([r["path"] for r in self.errors] + [self.names[p] for p in self.paths], self.force)
        if merged.missing:
            callback.on_error(
                f"{len(merged.missing)} crop(s) have no result in {display_name(self.parts.folder)} (first: "
                f"{merged.missing[0]}); the parts are kept: run the command again"
            )
            return False
        try:
            leftover = self.parts.finish(merged)
        except OSError as e:
            callback.on_error(f"cannot write {self.what}: {e.strerror or e}; the parts are kept: run the command again")
            return False
        if leftover:
            callback.on_note(leftover)
        return True


def run_crop_job(processor, paths: list[str], errors: list[dict], output: str | Path, settings: str,
                 callback: JobCallback, ranks: Ranks | None = None, batch_size: int = 16,
                 decoding: dict | None = None, force: bool = False,
                 wait: float = 0.0) -> tuple[CropJob, JobResult]:  # fmt: skip
    """Run the crop job on every rank (each calls this with the same arguments); returns the job
    (its ``paths``) and the outcome: "written" on rank 0 when FILE is complete, "worked" on the
    other ranks, "refused" (another run holds FILE, or FILE is not ours to write), "failed"."""
    ranks = ranks or Ranks()
    job = CropJob(processor, paths, errors, output, settings, ranks.rank, batch_size, decoding, force)
    ranks.check_shared([job.parts.output.absolute().parent])
    return job, run_job(job, ranks, callback, wait)
