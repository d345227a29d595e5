"""``--jsonl --output FILE`` for crops: resumable, and split over ranks (see ``distributed``).

Each rank appends its records, one line each and flushed, to ``FILE.parts/rank-R.jsonl``; when
every rank is done, rank 0 writes FILE in input order (a temporary file and a rename) and removes
the parts. A crop counts as done when FILE or a part holds a record of its text; a run does the
rest, so a killed run, run again with the same command and any number of ranks, does only what is
missing. A line cut short by a kill has no newline at its end: readers skip it and its rank cuts
it off before appending. Records of failures are kept in FILE, in their place, and tried again by
the next run. Lines of FILE for paths outside the run's inputs are kept, first, as they are.

``FILE.parts/settings.json`` records the model and decoding the parts were made with; parts made
with other settings (or a settings file that cannot be read) are discarded. ``--force`` reads every
crop again, whatever FILE holds. A part line that is not UTF-8 JSON (a disk error) is skipped, and
its crop read again. One run at a time works on FILE: ``FILE.lock`` (``locks``); only the files a
run makes are removed at the end (``rank-R.jsonl``, ``settings.json``, temporary files).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..core.atomic_files import remove_folder_of, remove_stale_temporaries, write_atomic
from ..core.errors import MangaOcrError
from ..core.files import read_regular
from ..core.names import display_name


@dataclass
class Merged:
    """What assembling FILE found."""

    lines: list[str] = field(default_factory=list)  # FILE's new content, one record a line
    new: int = 0  # records taken from the parts
    missing: list[str] = field(default_factory=list)  # inputs with no record at all (lost work: must be none)


def read_records(path: Path, part: bool | None = None) -> list[tuple[str, dict | None]]:
    """The lines of a JSONL file as (line, record); record is None for a line that is not a JSON
    object with a ``path``. In a ``part``, a last line without its newline (cut by a kill) and a
    line that is not UTF-8 are left out (their crops are read again). FILE is read whole, its last
    line too (runs write it with a newline: a line without one is the user's, kept), and must be
    UTF-8 text, else ``MangaOcrError``: it is not ours to change. ``part`` None: a file in a
    ``.parts`` folder is a part."""
    if part is None:
        part = path.parent.name.endswith(".parts")
    try:
        data = read_regular(path)
    except FileNotFoundError:
        return []
    except OSError as e:
        raise MangaOcrError(f"cannot read {display_name(path)}: {e.strerror or e}") from None
    if not part:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MangaOcrError(
                f"{display_name(path)} is not a JSON Lines file (not UTF-8 text: {e}); give another --output"
            ) from None
    pieces = data.split(b"\n")
    out = []
    for raw in pieces[:-1] if part else pieces:  # a part's piece after its last newline is incomplete
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            if part:
                continue
            raise MangaOcrError(
                f"{display_name(path)} is not a JSON Lines file (not UTF-8 text: {e}); give another --output"
            ) from None
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
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

    @property
    def lock_path(self) -> Path:
        return self.output.with_name(self.output.name + ".lock")

    def part(self, rank: int) -> Path:
        return self.folder / f"rank-{rank}.jsonl"

    def parts(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("rank-*.jsonl") if p.is_file()) if self.folder.is_dir() else []

    def prepare(self) -> str | None:
        """Rank 0, holding the lock, before the others look: make the parts folder; discard parts
        made with other settings and temporary files a kill left. Returns a message when it
        discarded parts. Raises ``MangaOcrError``, having made nothing, when FILE exists and is not
        a JSON Lines file, or when something other than a folder is where the parts go."""
        read_records(self.output)
        if self.folder.exists() and not self.folder.is_dir():
            raise MangaOcrError(
                f"{display_name(self.folder)} is where the parts of {display_name(self.output)} go, and it is not a "
                "folder: move it away"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.output.parent, self.output.name)
        for name in ("settings.json", *(p.name for p in self.parts())):
            remove_stale_temporaries(self.folder, name)
        stamp = self.folder / "settings.json"
        try:
            old = read_regular(stamp).decode("utf-8")
        except FileNotFoundError:
            old = None
        except (OSError, UnicodeDecodeError):
            old = ""  # unreadable, or not a file: the parts' settings are unknown
        message = None
        if old is not None and old != self.settings:
            stale = self.parts()
            for part in stale:
                part.unlink()
            if stale:
                message = f"{display_name(self.folder)}: discarded {len(stale)} part file(s) made with other settings"
        if old != self.settings:
            write_atomic(stamp, self.settings)
        return message

    def done(self, force: bool = False) -> set[str]:
        """Paths with a text record in the parts (and in FILE, unless ``force``)."""
        sources = self.parts() if force else [self.output, *self.parts()]
        found = set()
        for src in sources:
            found |= {r["path"] for _, r in read_records(src, src != self.output) if r is not None and "text" in r}
        return found

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
            for line, record in read_records(part, part=True):
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

    def finish(self, merged: Merged) -> str | None:
        """Write FILE, then remove the parts (a kill between the two leaves parts that the next run
        merges again to the same FILE). Only the files runs make are removed; the folder goes when
        nothing else is in it, else the message says what was left."""
        write_atomic(self.output, "".join(line + "\n" for line in merged.lines))
        return remove_folder_of(self.folder, r"rank-\d+\.jsonl|settings\.json|\..*\.tmp")


def _keep_best(records: dict[str, tuple[str, dict]], line: str, record: dict) -> None:
    """Keep the first record of each path, unless a text comes after an error."""
    seen = records.get(record["path"])
    if seen is None or ("text" in record and "text" not in seen[1]):
        records[record["path"]] = (line, record)
