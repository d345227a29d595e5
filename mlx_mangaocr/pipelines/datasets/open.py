"""A DATA argument's kind, known by its form (``FORMS``), and the sources of a run."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ...core.files import read_regular
from ...core.names import display_name
from .listed import read_csv, read_jsonl
from .manga109 import read_manga109
from .mokuro import read_mokuro
from .samples import DataError, Dataset, Problems

FORMS = (
    'a .jsonl file ({"image": PATH, "text": STR} a line), a .csv file with image and text columns, a .mokuro '
    "volume (its pages beside it), a Manga109-s folder (with books.txt) or a synth folder (with labels.jsonl)"
)


def open_dataset(path: str | Path, books: list[str] | None = None, skip_bad: bool = False) -> Dataset:
    """The samples of one source. ``books`` limits a Manga109-s source to those titles. Bad data
    raises ``DataError`` naming the file and line or box; with ``skip_bad`` it is left out and
    named in ``Dataset.skipped``. A source that cannot be read at all always raises."""
    path = Path(path)
    shown = display_name(path)
    problem = Problems(skip_bad)
    try:
        is_dir = stat.S_ISDIR(os.stat(path).st_mode)
    except FileNotFoundError:
        raise DataError(f"data not found: {shown}") from None
    except OSError as e:
        raise DataError(f"cannot open {shown}: {e.strerror or e}") from None
    if is_dir:
        if (path / "books.txt").is_file():
            return read_manga109(path, problem, books)
        if (path / "labels.jsonl").is_file():
            return read_jsonl(path / "labels.jsonl", problem, kind="synth")
        raise DataError(f"{shown} is a folder without books.txt or labels.jsonl; DATA is {FORMS}")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return read_jsonl(path, problem)
    if suffix == ".csv":
        return read_csv(path, problem)
    if suffix == ".mokuro":
        return read_mokuro(path, problem)
    raise DataError(f"{shown}: not a kind of data known here; DATA is {FORMS}")


def read_books(path: str | Path) -> list[str]:
    """The titles of a ``--books`` file: one a line, blank lines ignored."""
    try:
        text = read_regular(Path(path)).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read --books {display_name(path)}: {getattr(e, 'strerror', None) or e}") from None
    books = [line.strip() for line in text.splitlines() if line.strip()]
    if not books:
        raise DataError(f"--books {display_name(path)} names no book")
    return books


def open_datasets(paths: list[str | Path], books: list[str] | None = None, skip_bad: bool = False) -> list[Dataset]:
    """Every source of a run, in order. ``books`` applies to every Manga109-s source, and needs one."""
    seen: dict[str, str] = {}
    for path in paths:
        real = os.path.realpath(path)
        if real in seen:
            raise DataError(f"{display_name(path)} is given twice (as {display_name(seen[real])} too): its samples "
                            "would count twice")  # fmt: skip
        seen[real] = str(path)
    datasets = []
    try:
        for path in paths:
            datasets.append(open_dataset(path, books, skip_bad))
        if books is not None:
            if not any(d.kind == "manga109" for d in datasets):
                raise DataError("--books chooses Manga109-s books, but no DATA is a Manga109-s folder (with books.txt)")
            found = {b for d in datasets for b in d.books or []}
            unknown = [b for b in books if b not in found]
            if unknown:
                raise DataError(f"--books names {len(unknown)} title(s) that no Manga109-s books.txt given lists: "
                                f"{', '.join(unknown[:5])}")  # fmt: skip
    except BaseException:
        for dataset in datasets:
            dataset.close()
        raise
    return datasets
