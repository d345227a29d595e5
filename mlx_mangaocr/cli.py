"""Command line: ``mlx-mangaocr`` (or ``python -m mlx_mangaocr``).

    mlx-mangaocr IMAGE_OR_DIR... [--model M] [--json | --jsonl] [--batch-size N] [--decoding beam|greedy]
    mlx-mangaocr --watch DIR [--output FILE]      # OCR images as they appear in DIR
    mlx-mangaocr --clipboard                      # OCR images copied to the clipboard, copy the text back
    mlx-mangaocr --pages PAGE_OR_DIR... [--detector D] [--draw DIR] [--json | --jsonl]   # whole pages
    mlx-mangaocr --mokuro LIBRARY_OR_VOLUME...    # volumes (folders, .cbz, .zip) -> VOLUME.mokuro
    mlx-mangaocr CROPS... --jsonl --output FILE   # resumable; FILE written in input order at the end

Both last forms run unchanged under ``mlx.launch`` (several processes, one Mac or several): the
work is split by rank and rank 0 assembles the outputs (see ``distributed``).

Exit status: 0 when every image was read, 1 when some failed (each failure is reported and the
others still run), 2 when nothing could run (no model, no clipboard, bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .distributed import DistributedError, Ranks
from .errors import InvalidImageError, MangaOcrError
from .locks import LockedError, RunLock
from .names import display_name
from .pages.volume import MAX_MEMBER_BYTES
from .watch import image_files


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


def recognize_files(processor, paths: list, batch_size: int, decoding: dict, emit: Callable[[dict], None],
                    progress: Progress | None = None, names: list[str] | None = None) -> None:  # fmt: skip
    """OCR ``paths`` (or any image inputs, reported under ``names``), ``batch_size`` decoding
    together; an image that cannot be read is reported on its own and the others still run.
    Results come in input order; ``seconds`` is the average time per image so far."""
    names = names or [display_name(p) if isinstance(p, (str, Path)) else str(p) for p in paths]
    pending: deque[tuple[str, str | None]] = deque()  # (name, error) in input order, not yet emitted

    def chunks():
        for start in range(0, len(paths), batch_size):
            pixels = []
            for image, name in zip(paths[start : start + batch_size], names[start : start + batch_size], strict=True):
                try:
                    pixels.append(processor.image_processor(image))
                    pending.append((name, None))
                except InvalidImageError as e:
                    pending.append((name, str(e)))
            if pixels:
                yield np.stack(pixels)

    def flush_errors():
        while pending and pending[0][1] is not None:
            name, error = pending.popleft()
            emit({"path": name, "error": error})
            if progress:
                progress.advance(1)

    began, done = time.perf_counter(), 0
    for result in processor.recognize_stream(chunks(), batch_size, **decoding):
        flush_errors()
        name, _ = pending.popleft()
        done += 1
        emit({
            "path": name,
            "text": result.text,
            "confidence": round(result.confidence, 4),
            "seconds": round((time.perf_counter() - began) / done, 4),
        })  # fmt: skip
        if progress:
            progress.advance(1)
    flush_errors()


def _load(model: str | None):
    from .model_cache import default_model_folder
    from .ocr.processor import load_mlx_processor

    return load_mlx_processor(model if model else default_model_folder())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlx-mangaocr",
        description="Japanese manga OCR (manga-ocr) on MLX.",
        epilog="Exit status: 0 all images read, 1 some failed, 2 nothing could run.",
    )
    parser.add_argument("inputs", nargs="*", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    parser.add_argument(
        "--model",
        help="converted MLX folder, Hugging Face folder or hub id (default: kha-white/manga-ocr-base, "
        "converted into ~/.cache/mlx-mangaocr on first use)",
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="one JSON array at the end")
    fmt.add_argument("--jsonl", dest="fmt", action="store_const", const="jsonl", help="one JSON object per line")
    parser.add_argument("--batch-size", type=int, default=16, help="images decoded together (default 16)")
    parser.add_argument(
        "--scheduler",
        choices=["continuous", "static"],
        help="continuous: a row takes the next image as soon as its image is done (default); "
        "static: each batch runs until its longest image is done. Same texts either way",
    )
    parser.add_argument(
        "--decoding",
        choices=["beam", "greedy"],
        default="beam",
        help="beam: the checkpoint's settings, as manga-ocr (default); greedy: num_beams=1",
    )
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: for several images, when stderr is a terminal)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--watch", metavar="DIR", help="OCR new or changed images in DIR as they appear")
    mode.add_argument("--clipboard", action="store_true", help="OCR images copied to the clipboard; copy the text back")
    mode.add_argument(
        "--pages", action="store_true", help="the inputs are whole pages: find the text, read it in reading order"
    )
    mode.add_argument(
        "--mokuro",
        action="store_true",
        help="the inputs are volumes (folders of pages, searched recursively, or .cbz/.zip): write VOLUME.mokuro "
        "beside each; an interrupted run resumes where it stopped",
    )
    parser.add_argument(
        "--detector",
        help="--pages/--mokuro: the text detector, a converted folder, Hugging Face folder or hub id (default: "
        "ogkalu/comic-text-and-bubble-detector, converted into ~/.cache/mlx-mangaocr on first use)",
    )
    parser.add_argument("--draw", metavar="DIR", help="--pages: write each page with its blocks drawn to DIR")
    parser.add_argument(
        "--left-to-right", action="store_true", help="--pages/--mokuro: western reading order (default: manga's)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="--mokuro: read volumes that already have a .mokuro; --jsonl --output: read crops FILE already has",
    )
    parser.add_argument(
        "--output",
        metavar="FILE",
        help="write results to FILE instead of printing them: with --jsonl, resumable (crops FILE has are "
        "skipped) and written in input order at the end; otherwise appended as they come",
    )
    parser.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="--mokuro, --jsonl --output: wait this long for another run working on the same volume or FILE "
        "(default: refuse at once, naming its lock file)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="refuse images (pages, crops) larger than N pixels before decoding them (default: Pillow's "
        "decompression-bomb limit, PIL.Image.MAX_IMAGE_PIXELS, 89,478,485)",
    )
    parser.add_argument(
        "--max-member-mb",
        type=float,
        default=MAX_MEMBER_BYTES / 2**20,
        metavar="MB",
        help=f"--mokuro: refuse an archive member that inflates to more than MB megabytes (default "
        f"{MAX_MEMBER_BYTES // 2**20}); it bounds the memory one page can take before it is decoded",
    )
    parser.add_argument("--interval", type=float, default=0.5, help="--watch/--clipboard: seconds between looks")
    parser.add_argument(
        "--limit", type=int, help="--watch/--clipboard: stop after this many images read (default: never)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_pixels is None:
        return _main(parser, args)
    from PIL import Image

    before, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, args.max_pixels
    try:
        return _main(parser, args)
    finally:
        Image.MAX_IMAGE_PIXELS = before


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        parser.error("--batch-size must be at least 1")
    if args.interval <= 0:
        parser.error("--interval must be positive")
    if not args.wait >= 0:
        parser.error("--wait must be 0 or more seconds")
    if not args.max_member_mb > 0:
        parser.error("--max-member-mb must be positive")
    if args.max_pixels is not None and args.max_pixels < 1:
        parser.error("--max-pixels must be at least 1")
    if (args.watch or args.clipboard) and args.inputs:
        parser.error("give images, or --watch DIR, or --clipboard, not several")
    if not (args.watch or args.clipboard or args.inputs):
        parser.error("give images or folders, --watch DIR or --clipboard")
    if (args.pages or args.mokuro) and not args.inputs:
        parser.error("--pages and --mokuro need pages or volumes to read")
    paged = args.pages or args.mokuro
    for flag, value in (("--detector", args.detector), ("--left-to-right", args.left_to_right)):
        if value and not paged:
            parser.error(f"{flag} goes with --pages or --mokuro")
    if args.draw and not args.pages:
        parser.error("--draw goes with --pages")
    jsonl_job = bool(args.inputs and args.fmt == "jsonl" and args.output and not args.pages)
    if args.force and not (args.mokuro or jsonl_job):
        parser.error("--force goes with --mokuro or with crops and --jsonl --output FILE")
    if args.mokuro and (args.fmt or args.output):
        parser.error("--mokuro writes VOLUME.mokuro files; --json, --jsonl and --output do not apply")
    if args.wait and not (args.mokuro or jsonl_job):
        parser.error("--wait goes with --mokuro or with crops and --jsonl --output FILE")
    if args.watch and not Path(args.watch).is_dir():
        print(f"error: --watch needs a folder: {args.watch}", file=sys.stderr)
        return 2
    clipboard = None
    if args.clipboard:
        from .clipboard import Clipboard

        try:
            clipboard = Clipboard()
        except MangaOcrError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        ranks = Ranks.init()
    except DistributedError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if ranks.size > 1 and not (args.mokuro or jsonl_job):
        print(
            f"error: under mlx.launch ({ranks.size} ranks) only --mokuro and crops with --jsonl --output FILE split "
            "the work; run other modes as one process",
            file=sys.stderr,
        )
        return 2
    if jsonl_job and (Path(args.output).is_dir() or not Path(args.output).absolute().parent.is_dir()):
        print(f"error: --output {args.output}: not a file in an existing folder", file=sys.stderr)
        return 2
    decoding = {"num_beams": 1} if args.decoding == "greedy" else {}
    if paged:
        from .pages.cli import run_pages

        return run_pages(args, decoding, ranks)
    try:
        processor = _load(args.model)
    except MangaOcrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    processor.scheduler = args.scheduler or processor.scheduler
    if jsonl_job:
        try:
            return _run_jsonl_job(processor, args, decoding, ranks)
        except MangaOcrError as e:  # the ranks disagree or cannot see each other's files; FILE is not JSONL
            print(f"error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            where = display_name(args.output)
            print(f"\ninterrupted: the crops read so far are kept in {where}.parts", file=sys.stderr)
            return 130
    stream = open(args.output, "a", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.inputs:
            return _run_files(processor, args, decoding, stream)
        return _run_live(processor, args, decoding, stream, clipboard)
    except KeyboardInterrupt:
        return 0
    finally:
        if args.output:
            stream.close()


def _run_files(processor, args, decoding: dict, stream) -> int:
    paths, errors = expand_inputs(args.inputs)
    out = Output(args.fmt or "text", stream, show_path=len(paths) + len(errors) > 1)
    for record in errors:
        out.emit(record)
    show = args.progress if args.progress is not None else len(paths) > 1 and sys.stderr.isatty()
    recognize_files(processor, paths, args.batch_size, decoding, out.emit, Progress(len(paths), show))
    out.close()
    return 1 if out.failed else 0


def model_source(source: str | None) -> str:
    """A ``--model``/``--detector`` value as saved results record it: a resolved folder, a hub id, or "default"."""
    return str(Path(source).resolve()) if source and Path(source).exists() else (source or "default")


def _settings(args, decoding: dict) -> str:
    """What a result depends on: the model and the decoding."""
    return json.dumps({"ocr": model_source(args.model), "decoding": decoding}, sort_keys=True)


def _run_jsonl_job(processor, args, decoding: dict, ranks: Ranks) -> int:
    """Crops to ``--jsonl --output FILE``, split over the ranks, resumable (see ``jsonl_parts``).
    One run at a time: rank 0 holds ``FILE.lock`` for the whole run."""
    from .jsonl_parts import JsonlParts

    began = time.perf_counter()
    paths, errors = expand_inputs(args.inputs)
    paths = list(dict.fromkeys(paths))  # a crop given twice is read once
    names = {p: display_name(p) for p in paths}  # what FILE records it as
    job = JsonlParts(args.output, _settings(args, decoding))
    ranks.check_shared([job.output.absolute().parent])
    lock = RunLock(job.lock_path, args.wait, display_name(job.output))
    refused = ""
    if ranks.rank == 0:
        try:
            lock.acquire()
            message = job.prepare()
            if message:
                print(message, file=sys.stderr, flush=True)
        except (LockedError, MangaOcrError) as e:  # another run; FILE not JSONL; FILE.parts not a folder
            refused = str(e)
        except OSError as e:
            refused = f"cannot write beside {display_name(job.output)}: {e.strerror or e}"
    try:
        if ranks.gather([int(bool(refused))])[0][0]:  # also the barrier: the parts are ready before anyone reads
            if refused:
                print(f"error: {refused}", file=sys.stderr, flush=True)
            return 2
        return _jsonl_work(processor, args, decoding, ranks, job, paths, names, errors, began)
    finally:
        lock.release()


def _jsonl_work(processor, args, decoding: dict, ranks: Ranks, job, paths: list[str], names: dict[str, str],
                errors: list[dict], began: float) -> int:  # fmt: skip
    done = job.done(args.force)
    todo = [p for p in paths if names[p] not in done]
    ranks.agree("the crops left to read", "\n".join(names[p] for p in todo))  # every rank has read the parts
    mine = ranks.take(todo)
    failed = 0
    write_error = ""
    with job.open_part(ranks.rank) as part:
        if ranks.rank == 0:
            for record in errors:  # inputs that are not crops (a folder without images)
                print(f"error: {record['error']}", file=sys.stderr, flush=True)
                job.append(part, record)

        def emit(record: dict) -> None:
            nonlocal failed
            if "error" in record:
                failed += 1
                print(f"error: {record['error']}", file=sys.stderr, flush=True)
            job.append(part, record)
            ranks.wrote()

        several = ranks.size > 1
        show = args.progress if args.progress is not None else several or (len(mine) > 1 and sys.stderr.isatty())
        label = f"{ranks.label}: " if several else ""
        progress = Progress(len(mine), show, label=label, lines=several)
        try:
            recognize_files(processor, mine, args.batch_size, decoding, emit, progress, [names[p] for p in mine])
        except OSError as e:  # a full disk, a part that cannot be written: what is written so far is whole
            write_error = f"cannot write {display_name(job.part(ranks.rank))}: {e.strerror or e}"
            print(f"error: {write_error}; the crops written so far are kept", file=sys.stderr, flush=True)
    counts = ranks.gather([len(mine) - failed, failed, int(bool(write_error))])  # also the barrier
    if ranks.rank != 0:
        return 1 if failed or write_error else 0
    if any(c[2] for c in counts):
        print(f"error: {display_name(job.output)} is not written; run the command again to read what is missing",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    merged = job.merge([r["path"] for r in errors] + [names[p] for p in paths], args.force)
    if merged.missing:
        raise DistributedError(
            f"{len(merged.missing)} crop(s) have no result in {display_name(job.folder)} (first: {merged.missing[0]}); "
            "the parts are kept: run the command again"
        )
    try:
        leftover = job.finish(merged)
    except OSError as e:
        print(f"error: cannot write {display_name(job.output)}: {e.strerror or e}; the parts are kept: run the "
              "command again", file=sys.stderr, flush=True)  # fmt: skip
        return 1
    if leftover:
        print(leftover, file=sys.stderr, flush=True)
    read, bad = sum(c[0] for c in counts), sum(c[1] for c in counts)
    print(
        f"{display_name(job.output)}: {len(paths)} crops ({read} read now, {len(paths) - len(todo)} done before, "
        f"{bad} failed{', ' + str(len(errors)) + ' input(s) without images' if errors else ''}) "
        f"{ranks.summary(counts)} in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return 1 if bad or errors else 0


def _run_live(processor, args, decoding: dict, stream, clipboard) -> int:
    out = Output("jsonl" if args.fmt == "jsonl" else "text", stream, show_path=bool(args.watch))
    count = 0

    def stop() -> bool:
        return args.limit is not None and count >= args.limit

    def read_one(image, name: str) -> dict:
        """OCR one image, emit its record, count it if read; return the record."""
        nonlocal count
        records: list[dict] = []
        recognize_files(processor, [image], 1, decoding, records.append, names=[name])
        out.emit(records[0])
        count += "text" in records[0]
        return records[0]

    if args.watch:
        from .watch import watch_folder

        print(f"watching {args.watch} for new images (Ctrl-C to stop)", file=sys.stderr, flush=True)
        watch_folder(args.watch, lambda path: read_one(path, display_name(path)), interval=args.interval, stop=stop)
    else:
        from .clipboard import watch_clipboard

        def on_image(image) -> str | None:
            return read_one(image, "<clipboard>").get("text")

        print("watching the clipboard for images (Ctrl-C to stop)", file=sys.stderr, flush=True)
        try:
            watch_clipboard(clipboard, on_image, interval=args.interval, stop=stop)
        except MangaOcrError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return 1 if out.failed else 0
