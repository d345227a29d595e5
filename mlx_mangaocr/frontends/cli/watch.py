"""``mlx-mangaocr watch DIR``: OCR new or changed images in a folder as they appear, as
manga-ocr's folder mode does."""

from __future__ import annotations

import sys
from pathlib import Path

from ...core.names import display_name
from ...pipelines.files import recognize_file
from ..watch import watch_folder
from . import common
from .common import Output, error


def add_live_options(p) -> None:
    common.add_model(p)
    common.add_decoding(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--jsonl", dest="fmt", action="store_const", const="jsonl", help="one JSON object per image")
    p.add_argument("--output", metavar="FILE", help="append the results to FILE instead of printing them")
    p.add_argument("--interval", type=common.positive, default=0.5, help="seconds between looks (default 0.5)")
    p.add_argument("--limit", type=common.positive_int, help="stop after this many images read (default: never)")
    common.add_progress(p)  # accepted as before; one image at a time shows no bar


def build_parser():
    p = common.parser("watch", "OCR new or changed images in DIR as they appear (Ctrl-C to stop).")
    p.add_argument("folder", metavar="DIR", help="the folder to watch")
    add_live_options(p)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not Path(args.folder).is_dir():
        error(f"--watch needs a folder: {args.folder}")
        return 2
    if not common.one_process("watch"):
        return 2
    return common.with_pixel_limit(args, lambda: run_live(args, lambda read: _watch(args, read)))


def run_live(args, loop) -> int:
    """Load the model, then ``loop(read)``: ``read(image, name)`` OCRs one image, writes its record
    and returns it. Exit status 2 when the model cannot be loaded, 1 when an image failed."""
    processor = common.load_processor(args)
    if processor is None:
        return 2
    decoding = common.decoding_of(args)
    stream = common.open_output(args.output)
    if stream is None:
        return 2
    out = Output("jsonl" if args.fmt == "jsonl" else "text", stream, show_path=hasattr(args, "folder"))
    count = 0

    def read(image, name: str) -> dict:
        nonlocal count
        record = recognize_file(processor, image, name, decoding)
        out.emit(record)
        count += "text" in record
        return record

    args.stop = lambda: args.limit is not None and count >= args.limit
    try:
        status = loop(read)
    except KeyboardInterrupt:
        status = 0
    finally:
        if args.output:
            stream.close()
    return status if status else (1 if out.failed else 0)


def _watch(args, read) -> int:
    print(f"watching {args.folder} for new images (Ctrl-C to stop)", file=sys.stderr, flush=True)
    watch_folder(args.folder, lambda path: read(path, display_name(path)), interval=args.interval, stop=args.stop)
    return 0
