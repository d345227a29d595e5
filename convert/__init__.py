"""``python -m convert`` from a checkout: the converter itself is ``mlx_mangaocr.convert`` (installed
as ``mlx-mangaocr-convert``); this folder only keeps the short command working in the repo."""

from mlx_mangaocr.frontends.convert import convert, default_output, main

__all__ = ["convert", "default_output", "main"]
