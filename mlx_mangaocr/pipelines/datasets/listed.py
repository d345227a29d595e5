"""Sources that list crop files with their texts: JSON Lines (``{"image": PATH, "text": STR}`` a
line), CSV (a header with ``image`` and ``text`` columns; others are ignored), and ``synth``
output (a folder's ``labels.jsonl``). An image PATH is relative to the list's folder, or absolute.
A sample's id is its ``id`` field or column when it has one, else ``FILE:LINE``."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from ...core.files import read_regular
from ...core.images import load_decoded
from ...core.names import display_name, is_text
from .samples import NOT_TEXT, DataError, Dataset, Problems, Sample


def _sample(folder: Path, image, text, sample_id, where: str, problem: Problems, seen: set[str]) -> Sample | None:
    if not isinstance(image, str) or not image:
        problem(f'{where}: no image path ("image" must be a non-empty string)')
        return None
    if not isinstance(text, str):
        problem(f'{where}: no text ("text" must be a string)')
        return None
    if not text:
        problem(f"{where}: the text is empty (a crop with nothing to read is not a sample)")
        return None
    for name, value in (("text", text), ("id", sample_id if isinstance(sample_id, str) else "")):
        if not is_text(value):
            problem(f"{where}: the {name} {NOT_TEXT}")
            return None
    try:
        os.fsencode(image)
    except UnicodeEncodeError:
        problem(f"{where}: the image path is not a file name (it holds a lone surrogate)")
        return None
    path = Path(image) if Path(image).is_absolute() else folder / image
    try:
        regular = path.is_file()
        exists = regular or path.exists()
    except OSError as e:
        problem(f"{where}: cannot open the image {display_name(path)}: {e.strerror or e}")
        return None
    if not exists:
        problem(f"{where}: image not found: {display_name(path)}")
        return None
    if not regular:
        problem(f"{where}: the image {display_name(path)} is not a regular file")
        return None
    sample_id = sample_id if isinstance(sample_id, str) and sample_id else where
    if sample_id in seen:
        problem(f"{where}: the id {sample_id!r} is used twice")
        return None
    seen.add(sample_id)
    return Sample(sample_id, text, where, lambda: load_decoded(path), file=path)


def _lines(path: Path) -> list[bytes]:
    try:
        return read_regular(path).splitlines()
    except OSError as e:
        raise DataError(f"cannot read {display_name(path)}: {e.strerror or e}") from None


def read_jsonl(path: Path, problem: Problems, kind: str = "jsonl") -> Dataset:
    """The samples of a JSON Lines file; blank lines are ignored."""
    shown, folder, samples, seen = display_name(path), path.parent, [], set()
    for number, raw in enumerate(_lines(path), 1):
        where = f"{shown}:{number}"
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError:
            problem(f"{where}: not UTF-8")
            continue
        except (ValueError, RecursionError):
            problem(f"{where}: not a JSON object")
            continue
        if not isinstance(record, dict):
            problem(f'{where}: not a JSON object with "image" and "text"')
            continue
        sample = _sample(folder, record.get("image"), record.get("text"), record.get("id"), where, problem, seen)
        if sample is not None:
            samples.append(sample)
    return Dataset(shown, kind, samples, problem.found, inputs=[path, *(s.file for s in samples)])


def read_csv(path: Path, problem: Problems) -> Dataset:
    """The samples of a CSV file with ``image`` and ``text`` columns (and an optional ``id``)."""
    shown = display_name(path)
    try:
        text = read_regular(path).decode("utf-8-sig")
    except OSError as e:
        raise DataError(f"cannot read {shown}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{shown} is not UTF-8 text (byte {e.start})") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))  # rows end at \n or \r only, as csv means
    try:
        columns = reader.fieldnames or []
    except csv.Error as e:
        raise DataError(f"{shown}: cannot read the header: {e}") from None
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        raise DataError(f"{shown}: its header names the column {twice[0]!r} more than once")
    missing = [c for c in ("image", "text") if c not in columns]
    if missing:
        raise DataError(f"{shown}: its header has no {' and no '.join(repr(c) for c in missing)} column "
                        f"(it has {', '.join(map(repr, columns)) or 'none'}); a CSV needs image and text")  # fmt: skip
    samples, seen = [], set()
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problem(f"{shown}:{reader.line_num}: not CSV: {e}")
            continue
        sample = _sample(path.parent, row.get("image"), row.get("text"), row.get("id"), f"{shown}:{reader.line_num}",
                         problem, seen)  # fmt: skip
        if sample is not None:
            samples.append(sample)
    return Dataset(shown, "csv", samples, problem.found, inputs=[path, *(s.file for s in samples)])
