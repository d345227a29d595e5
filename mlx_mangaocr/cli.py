"""Command line: ``python -m mlx_mangaocr IMAGE... [--model M] [--decoding beam|greedy]``."""

from __future__ import annotations

import argparse
import sys

from .errors import MangaOcrError
from .loading import DEFAULT_MODEL


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlx_mangaocr", description="Japanese manga OCR (manga-ocr) on MLX."
    )
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"converted folder, HF folder or hub id (default {DEFAULT_MODEL})"
    )
    parser.add_argument(
        "--decoding",
        choices=["beam", "greedy"],
        default="beam",
        help="beam: the checkpoint's settings, as manga-ocr (default); greedy: num_beams=1",
    )
    args = parser.parse_args(argv)
    from . import load_mlx_processor

    try:
        processor = load_mlx_processor(args.model)
    except MangaOcrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    decoding = {"num_beams": 1} if args.decoding == "greedy" else {}
    failed = 0
    for image in args.images:
        try:
            text = processor.process_image(image, **decoding)
        except MangaOcrError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{image}\t{text}" if len(args.images) > 1 else text)
    return 1 if failed else 0
