"""Which characters a sample may hold: the vocabulary (manga-ocr's character list, or a model's
``vocab.txt``), the kana furigana are drawn from, character classes, and the length distribution.

``assets/vocab.csv`` and ``assets/len_to_p.csv`` come from kha-white/manga-ocr (Apache-2.0; see
``assets/NOTICE``)."""

from __future__ import annotations

import csv
import unicodedata
from pathlib import Path

import numpy as np

from ...core.errors import MangaOcrError

ASSETS = Path(__file__).parent / "assets"
HIRAGANA = "".join(chr(c) for c in range(0x3041, 0x3094))  # ぁ..ゔ: the kana furigana are written in
KATAKANA = "".join(chr(c) for c in range(0x30A1, 0x30F5))  # ァ..ヴ


class SynthError(MangaOcrError, ValueError):
    """Bad input to the synthetic data generator (a path, a font folder, a corpus, a count)."""


def default_vocab() -> frozenset[str]:
    """manga-ocr's own character list (``assets/vocab.csv``, 5,450 characters)."""
    with open(ASSETS / "vocab.csv", encoding="utf-8", newline="") as f:
        return frozenset(row["char"] for row in csv.DictReader(f) if len(row["char"]) == 1)


def model_vocab(source: str) -> frozenset[str]:
    """The single characters of a model's ``vocab.txt`` (special tokens and ``##`` pieces left out).
    ``source`` is a model folder or a hub id (only ``vocab.txt`` and the token maps are fetched).
    Raises ``ModelLoadError`` when it cannot be read, ``SynthError`` when it holds no characters."""
    from ...loading import hub
    from ...loading.checkpoints import resolve_source
    from ...loading.ocr import DEFAULT_MODEL
    from ...models.ocr.text import Vocab

    optional = ("special_tokens_map.json", "tokenizer_config.json")
    folder = resolve_source(source, lambda repo: hub.download(repo, ("vocab.txt",), optional), DEFAULT_MODEL)
    chars = frozenset(t for t in Vocab.from_folder(folder).tokens if len(t) == 1 and not t.isspace())
    if not chars:
        raise SynthError(f"--model {source}: its vocab.txt holds no single characters to write samples with")
    return chars


def length_distribution() -> tuple[np.ndarray, np.ndarray]:
    """(lengths, probabilities) of text lengths in manga (``assets/len_to_p.csv``: 1-250 characters,
    mostly short), probabilities normalised to sum to 1."""
    with open(ASSETS / "len_to_p.csv", encoding="utf-8", newline="") as f:
        rows = [(int(r["len"]), float(r["p"])) for r in csv.DictReader(f)]
    lengths = np.array([n for n, _ in rows])
    p = np.array([q for _, q in rows])
    return lengths, p / p.sum()


def is_kanji(c: str) -> bool:
    return "CJK UNIFIED IDEOGRAPH" in unicodedata.name(c, "") or c in "々〆"


def is_ascii(c: str) -> bool:
    return " " < c < "\x7f"
