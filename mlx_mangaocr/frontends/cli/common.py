"""What the subcommands share: options, output formats, the progress bar, inputs, and a job
callback that prints."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

from ...core.errors import MangaOcrError
from ...core.images import image_files, is_image_name
from ...core.names import display_name
from ...pipelines.jobs import JobCallback

EXIT = "Exit status: 0 all read, 1 some failed (each is named on stderr), 2 nothing could run."


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A subcommand's parser: no abbreviated options (``--sched`` is not ``--scheduler``)."""
    return argparse.ArgumentParser(prog=f"mlx-mangaocr {prog}", description=description, epilog=EXIT,
                                   allow_abbrev=False)  # fmt: skip


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        help="converted MLX folder, Hugging Face folder or hub id (default: kha-white/manga-ocr-base, "
        "converted into ~/.cache/mlx-mangaocr on first use)",
    )


def add_detector(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--detector",
        help="the text detector, a converted folder, Hugging Face folder or hub id (default: "
        "ogkalu/comic-text-and-bubble-detector, converted into ~/.cache/mlx-mangaocr on first use)",
    )


def add_decoding(p: argparse.ArgumentParser, batch: str = "images decoded together") -> None:
    p.add_argument("--batch-size", type=positive_int, default=16, help=f"{batch} (default 16)")
    p.add_argument(
        "--scheduler",
        choices=["continuous", "static"],
        help="continuous: a row takes the next image as soon as its image is done (default); "
        "static: each batch runs until its longest image is done. Same texts either way",
    )
    p.add_argument(
        "--decoding",
        choices=["beam", "greedy"],
        default="beam",
        help="beam: the checkpoint's settings, as manga-ocr (default); greedy: num_beams=1",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        metavar="N",
        help="refuse images larger than N pixels before decoding them (default: Pillow's decompression-bomb "
        "limit, PIL.Image.MAX_IMAGE_PIXELS, 89,478,485)",
    )


def add_progress(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress on stderr (default: for several images, when stderr is a terminal)",
    )


def add_wait(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--wait",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help=f"wait this long for another run working on the same {what} (default: refuse at once, naming its "
        "lock file)",
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive(text: str) -> float:
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def decoding_of(args: argparse.Namespace) -> dict:
    return {"num_beams": 1} if args.decoding == "greedy" else {}


def with_pixel_limit(args: argparse.Namespace, run):
    """``run()`` with ``PIL.Image.MAX_IMAGE_PIXELS`` set from ``--max-pixels`` (restored after)."""
    if getattr(args, "max_pixels", None) is None:
        return run()
    from PIL import Image

    before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, args.max_pixels
    try:
        return run()
    finally:
        Image.MAX_IMAGE_PIXELS = before


def model_source(source: str | None) -> str:
    """A ``--model``/``--detector`` value as saved results record it: a resolved folder, a hub id, or "default"."""
    return str(Path(source).resolve()) if source and Path(source).exists() else (source or "default")


def output_problem(output: str | None, inputs: list[str], option: str = "--output") -> str | None:
    """Why ``output`` (the value of ``option``) cannot be written, or None: it must not be an input
    (the same file by any name), nor a folder, and its folder must exist."""
    if output is None:
        return None
    path = Path(output)
    if path.is_dir() or not path.absolute().parent.is_dir():
        return f"{option} {display_name(output)}: not a file in an existing folder"
    if not path.exists():
        return None
    for item in inputs:
        try:
            if os.path.samefile(item, path) or (Path(item).is_dir() and path.absolute().parent.samefile(item)
                                                and is_image_name(path)):  # fmt: skip
                return f"{option} {display_name(output)} is one of the inputs: it is never written; choose another FILE"
        except OSError:
            continue
    return None


def open_output(output: str | None):
    """``sys.stdout``, or ``--output`` opened for appending; None after saying why it cannot be."""
    if output is None:
        return sys.stdout
    try:
        return open(output, "a", encoding="utf-8")  # noqa: SIM115 (the caller closes it)
    except OSError as e:
        error(f"cannot write --output {display_name(output)}: {e.strerror or e}")
        return None


def one_process(command: str) -> bool:
    """True when this is one process; else (under ``mlx.launch``) False, after saying why ``command``
    does not run there: only mokuro and the crop job split their work over ranks."""
    from ...core.ranks import DistributedError, Ranks

    try:
        ranks = Ranks.init()
    except DistributedError as e:
        error(str(e))
        return False
    if ranks.size > 1:
        error(f"under mlx.launch ({ranks.size} ranks) only mokuro and crops with --jsonl --output FILE split the "
              f"work; run {command} as one process")  # fmt: skip
        return False
    return True


def load_processor(args: argparse.Namespace):
    """The OCR model ``--model`` names, with ``--scheduler`` set; None after saying why it cannot load."""
    from ...pipelines.ocr import load_ocr

    try:
        processor = load_ocr(args.model)
    except MangaOcrError as e:
        error(str(e))
        return None
    processor.scheduler = args.scheduler or processor.scheduler
    return processor


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


class Progress:
    """Progress on stderr: a one-line bar, or (``lines``, for ranks sharing a terminal) a line every
    ``every`` seconds and one at the end."""

    def __init__(self, total: int, enabled: bool, unit: str = "images", label: str = "", lines: bool = False,
                 every: float = 10.0):  # fmt: skip
        self.total, self.enabled, self.done, self.start = total, enabled, 0, time.perf_counter()
        self.unit, self.label, self.lines, self.every, self.shown = unit, label, lines, every, self.start
        self.rate_unit = "img/s" if unit == "images" else f"{unit}/s"

    def advance(self, count: int) -> None:
        self.done += count
        if not self.enabled:
            return
        now = time.perf_counter()
        rate = self.done / max(now - self.start, 1e-9)
        if self.lines:
            if self.done >= self.total or now - self.shown >= self.every:
                self.shown = now
                print(f"{self.label}{self.done}/{self.total} {self.unit}, {rate:.2f} {self.rate_unit}",
                      file=sys.stderr, flush=True)  # fmt: skip
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r{self.label}[{bar}] {self.done}/{self.total} {self.unit}, {rate:.2f} {self.rate_unit}")
        if self.done >= self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()


class Output:
    """Writes results as text lines, JSON Lines, or one JSON array at the end."""

    def __init__(self, fmt: str, stream, show_path: bool):
        self.fmt, self.stream, self.show_path, self.records, self.failed = fmt, stream, show_path, [], 0

    def emit(self, record: dict) -> None:
        if "error" in record:
            self.failed += 1
            print(f"error: {record['error']}", file=sys.stderr, flush=True)
        if self.fmt == "json":
            self.records.append(record)
        elif self.fmt == "jsonl":
            self.stream.write(json.dumps(record, ensure_ascii=False) + "\n")
        elif "text" in record:
            self.stream.write(f"{record['path']}\t{record['text']}\n" if self.show_path else record["text"] + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write(json.dumps(self.records, ensure_ascii=False, indent=1) + "\n")
            self.stream.flush()


def expand_inputs(inputs: list[str]) -> tuple[list[str], list[dict]]:
    """Files as given, folders as their image files; failures for folders without images."""
    files, errors = [], []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = image_files(path)
            if not found:
                errors.append({"path": display_name(item), "error": f"no image files in folder {display_name(item)}"})
            files += [str(p) for p in found]  # names as the OS gives them; shown through display_name
        else:
            files.append(item)  # a missing file is reported when it is read
    return files, errors


class PrintingCallback(JobCallback):
    """A job's reports on stderr: errors and notes (``lead``: this rank reports what every rank
    sees alike), and progress per share through ``Progress``."""

    def __init__(self, show: bool, lines: bool = False, label: str = "", unit: str = "images", lead: bool = True):
        self.show, self.lines, self.label, self.unit, self.lead = show, lines, label, unit, lead
        self.progress: Progress | None = None
        self.failed = False

    def on_error(self, message: str) -> None:
        self.failed = True
        bar = self.progress
        if bar is not None and bar.enabled and not self.lines and 0 < bar.done < bar.total:
            sys.stderr.write("\n")  # end the bar's line first: the error gets a line of its own
        error(message)

    def on_note(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def on_start(self, label: str, total: int, done: int) -> None:
        if self.lines:  # ranks sharing a terminal: each shows its own share
            name = f"{label}: " if label else ""
            self.progress = Progress(total, self.show, self.unit, f"{self.label}{name}", lines=True)
        else:
            self.progress = Progress(total + done, self.show, self.unit, f"{label} " if label else "")
            if done:
                self.progress.advance(done)

    def on_advance(self, count: int) -> None:
        if self.progress is not None:
            self.progress.advance(count)


def settings_json(**values) -> str:
    """What saved results depend on, as the text they record."""
    return json.dumps(values, sort_keys=True)


__all__ = ["Output", "Progress", "PrintingCallback", "expand_inputs", "model_source", "time"]
