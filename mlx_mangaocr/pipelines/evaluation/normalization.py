"""How a reference and a prediction are made comparable before they are scored.

- ``manga-ocr`` (the default): manga-ocr's own post-processing, applied to the reference, since
  predictions already come out that way: all whitespace removed, ``…`` as ``...``, runs of two or
  more ``・``/``.`` as as many ``.``, then half-width ASCII and digits to full width.
- ``nfkc``: Unicode NFKC on both sides. It undoes manga-ocr's half- to full-width step, so it
  compares a prediction with a reference written in either width. Whitespace is kept.
- ``none``: the texts as they are.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable

from ...models.ocr.text import post_process

NORMALIZERS = ("manga-ocr", "nfkc", "none")


def _nfkc(text: str) -> str:
    return unicodedata.normalize("NFKC", text)


def normalizer(name: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    """The (reference, prediction) functions of a normalization named in ``NORMALIZERS``."""
    if name == "manga-ocr":
        return post_process, str
    if name == "nfkc":
        return _nfkc, _nfkc
    if name == "none":
        return str, str
    raise ValueError(f"unknown normalization {name!r}: choose one of {', '.join(NORMALIZERS)}")
