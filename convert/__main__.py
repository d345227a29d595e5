"""Command line: python -m convert SOURCE [-o OUT] [--dtype ...] [--force]."""

from __future__ import annotations

import argparse
import sys

from mlx_mangaocr.errors import MangaOcrError
from mlx_mangaocr.loading import DEFAULT_MODEL, DTYPES
from mlx_mangaocr.model import QUANT_BITS, QUANT_GROUP_SIZES

from . import convert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convert",
        description="Convert a Hugging Face manga-ocr checkpoint (hub id or local folder) to an MLX model folder.",
    )
    parser.add_argument("source", nargs="?", default=DEFAULT_MODEL, help=f"hub id or folder (default {DEFAULT_MODEL})")
    parser.add_argument("-o", "--output", help="output folder (default: ~/.cache/mlx-mangaocr/NAME[-DTYPE])")
    parser.add_argument("--dtype", choices=list(DTYPES), default="float32", help="weight dtype (default float32)")
    parser.add_argument("--force", action="store_true", help="overwrite a non-empty output folder")
    parser.add_argument("-q", "--quantize", action="store_true", help="quantize Linear/Embedding weights (nn.quantize)")
    parser.add_argument("--q-bits", type=int, default=4, choices=QUANT_BITS, help="bits per weight (default 4)")
    parser.add_argument("--q-group-size", type=int, default=64, choices=QUANT_GROUP_SIZES, help="default 64")
    args = parser.parse_args(argv)
    quantize = {"group_size": args.q_group_size, "bits": args.q_bits} if args.quantize else None
    try:
        out = convert(args.source, args.output, dtype=args.dtype, force=args.force, quantize=quantize)
    except (MangaOcrError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
