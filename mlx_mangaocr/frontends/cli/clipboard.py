"""``mlx-mangaocr clipboard``: OCR each image copied to the clipboard and copy its text back, as
manga-ocr's default mode does."""

from __future__ import annotations

import sys

from ...core.errors import MangaOcrError
from ..clipboard import Clipboard, watch_clipboard
from . import common
from .common import error
from .watch import add_live_options, run_live


def build_parser():
    p = common.parser("clipboard", "OCR images copied to the clipboard; copy the text back (Ctrl-C to stop).")
    add_live_options(p)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not common.one_process("clipboard"):
        return 2
    try:
        clipboard = Clipboard()
    except MangaOcrError as e:
        error(str(e))
        return 2
    return common.with_pixel_limit(args, lambda: run_live(args, lambda read: _watch(args, clipboard, read)))


def _watch(args, clipboard, read) -> int:
    print("watching the clipboard for images (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        watch_clipboard(clipboard, lambda image: read(image, "<clipboard>").get("text"), args.interval, args.stop)
    except MangaOcrError as e:
        error(str(e))
        return 2
    return 0
