"""``mlx-mangaocr convert SOURCE``: the converter (also ``mlx-mangaocr-convert``)."""

from __future__ import annotations

from .. import convert


def main(argv: list[str]) -> int:
    return convert.main(argv, prog="mlx-mangaocr convert")
