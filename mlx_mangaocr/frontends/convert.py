"""Convert a Hugging Face checkpoint (the manga-ocr model or the comic text detector) into an MLX
model folder; which of the two it is comes from its ``config.json``.

    mlx-mangaocr-convert kha-white/manga-ocr-base [-o OUT] [--dtype float32|float16|bfloat16]
                         [-q [--q-bits 4|8] [--q-group-size 64]] [--force]
    mlx-mangaocr-convert ogkalu/comic-text-and-bubble-detector [-o OUT]

(also ``python -m mlx_mangaocr.convert``, and ``python -m convert`` from a checkout).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.errors import MangaOcrError
from ..loading.checkpoints import DTYPES
from ..loading.converted import cache_folder
from ..loading.ocr import DEFAULT_MODEL
from ..loading.registry import kind_of
from ..models.ocr.model import QUANT_BITS, QUANT_GROUP_SIZES


def default_output(source: str, dtype: str, quantize: dict[str, int] | None = None) -> Path:
    """Where a converted model goes when no ``-o`` is given: the per-user model cache."""
    return cache_folder(source, dtype, quantize)


def model_kind(source: str | Path) -> str:
    """ "ocr" or "detector", from the source's ``config.json`` (fetched alone for a hub id)."""
    return kind_of(source).name


def convert(
    source: str,
    output: str | Path | None = None,
    dtype: str = "float32",
    force: bool = False,
    quantize: dict[str, int] | None = None,
) -> Path:
    """Load ``source`` (hub id or folder; an OCR model or a detector), check every tensor, cast to
    ``dtype``, optionally quantize an OCR model (``{"bits": 8, "group_size": 64}``) and write an MLX
    model folder; return its path. Refuses to write into a non-empty folder unless ``force``."""
    out = Path(output) if output else default_output(source, dtype, quantize)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty; pass --force to overwrite it")
    kind = kind_of(source)
    if kind.name == "detector":
        if quantize:
            raise ValueError("quantization is for the OCR model; the detector converts in float32/16 only")
        return kind.save(kind.load(source, dtype=dtype), out, overwrite=force)
    return kind.save(kind.load(source, dtype=dtype, quantize=quantize), out, overwrite=force)


def main(argv: list[str] | None = None, prog: str = "mlx-mangaocr-convert") -> int:
    """The command line; returns the exit status (0, or 1 with an ``error:`` line on stderr)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Convert a Hugging Face manga-ocr model or comic text detector (hub id or local folder) "
        "to an MLX model folder.",
        allow_abbrev=False,
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
    sys.exit(main(prog="python -m mlx_mangaocr.convert"))
