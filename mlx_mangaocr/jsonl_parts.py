"""``--jsonl --output FILE`` for crops: resumable, and split over ranks (see ``distributed``).

Each rank appends its records, one line each and flushed, to ``FILE.parts/rank-R.jsonl``; when
every rank is done, rank 0 writes FILE in input order (a temporary file and a rename) and removes
the parts. A crop counts as done when FILE or a part holds a record of its text; a run does the
rest, so a killed run, run again with the same command and any number of ranks, does only what is
missing. A line cut short by a kill has no newline at its end: readers skip it and its rank cuts
it off before appending. Records of failures are kept in FILE, in their place, and tried again by
the next run. Lines of FILE for paths outside the run's inputs are kept, first, as they are.

``FILE.parts/settings.json`` records the model and decoding the parts were made with; parts made
with other settings are discarded. ``--force`` reads every crop again, whatever FILE holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .atomic_files import write_atomic
from .errors import MangaOcrError


@dataclass
class Merged:
    """What assembling FILE found."""

    lines: list[str] = field(default_factory=list)  # FILE's new content, one record a line
    new: int = 0  # records taken from the parts
    missing: list[str] = field(default_factory=list)  # inputs with no record at all (lost work: must be none)


def read_records(path: Path) -> list[tuple[str, dict | None]]:
    """The complete lines of a JSONL file as (line, record); record is None for a line that is not a
    JSON object with a ``path``. A last line without its newline (cut by a kill) is left out."""
    try:
        data = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except UnicodeDecodeError as e:
        raise MangaOcrError(f"{path} is not a JSON Lines file (not UTF-8 text: {e}); give another --output") from None
    out = []
    for line in data.split("\n")[:-1]:  # the piece after the last newline is incomplete (or empty)
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if not (isinstance(record, dict) and isinstance(record.get("path"), str)):
            record = None
        out.append((line, record))
    return out


class JsonlParts:
    """FILE and its parts folder (see the module docstring)."""

    def __init__(self, output: str | Path, settings: str):
        self.output = Path(output)
        self.folder = self.output.with_name(self.output.name + ".parts")
        self.settings = settings

    def part(self, rank: int) -> Path:
        return self.folder / f"rank-{rank}.jsonl"

    def parts(self) -> list[Path]:
        return sorted(self.folder.glob("rank-*.jsonl")) if self.folder.is_dir() else []

    def prepare(self) -> str | None:
        """Rank 0, before the others look: make the parts folder; discard parts made with other
        settings. Returns a message when it discarded some. Raises ``MangaOcrError``, having made
        nothing, when FILE exists and is not a JSON Lines file."""
        read_records(self.output)
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = self.folder / "settings.json"
        try:
            old = stamp.read_text(encoding="utf-8")
        except FileNotFoundError:
            old = None
        message = None
        if old is not None and old != self.settings:
            stale = self.parts()
            for part in stale:
                part.unlink()
            if stale:
                message = f"{self.folder}: discarded {len(stale)} part file(s) made with other settings"
        if old != self.settings:
            write_atomic(stamp, self.settings)
        return message

    def done(self, force: bool = False) -> set[str]:
        """Paths with a text record in the parts (and in FILE, unless ``force``)."""
        sources = self.parts() if force else [self.output, *self.parts()]
        return {r["path"] for src in sources for _, r in read_records(src) if r is not None and "text" in r}

    def open_part(self, rank: int):
        """This rank's part, open for appending, after cutting off a line a kill left unfinished."""
        path = self.part(rank)
        if path.exists():
            data = path.read_bytes()
            end = data.rfind(b"\n") + 1
            if end < len(data):
                with open(path, "r+b") as f:
                    f.truncate(end)
        return open(path, "a", encoding="utf-8")  # noqa: SIM115 (the caller closes it)

    @staticmethod
    def append(stream, record: dict) -> None:
        stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        stream.flush()

    def merge(self, paths: list[str], force: bool = False) -> Merged:
        """FILE's new content: its lines for other paths, then one record per input path in input
        order, a part's record first (a text over an error), else FILE's (unless ``force``)."""
        wanted = set(paths)
        merged = Merged()
        old: dict[str, tuple[str, dict]] = {}
        for line, record in read_records(self.output):
            if record is None or record["path"] not in wanted:
                merged.lines.append(line)
            elif not force:
                _keep_best(old, line, record)
        new: dict[str, tuple[str, dict]] = {}
        for part in self.parts():
            for line, record in read_records(part):
                if record is not None and record["path"] in wanted:
                    _keep_best(new, line, record)
        for path in paths:
            if path in new:
                merged.lines.append(new[path][0])
                merged.new += 1
            elif path in old:
                merged.lines.append(old[path][0])
            else:
                merged.missing.append(path)
        return merged

    def finish(self, merged: Merged) -> None:
        """Write FILE, then remove the parts (a kill between the two leaves parts that the next run
        merges again to the same FILE)."""
        write_atomic(self.output, "".join(line + "\n" for line in merged.lines))
        for leftover in self.folder.iterdir():  # the parts, settings.json, a temporary file a kill left
            leftover.unlink()
        self.folder.rmdir()


def _keep_best(records: dict[str, tuple[str, dict]], line: str, record: dict) -> None:
    """Keep the first record of each path, unless a text comes after an error."""
    seen = records.get(record["path"])
    if seen is None or ("text" in record and "text" not in seen[1]):
        records[record["path"]] = (line, record)
