"""Markup of a sample's lines: which kanji get furigana (kana beside them, not in the label), and
which ASCII runs are set horizontally in vertical text (tate-chū-yoko) or turned sideways, with
upstream's probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .charsets import HIRAGANA, KATAKANA, is_ascii, is_kanji

FURIGANA_P = 0.5  # samples with furigana
TCY_P = 0.7  # ASCII runs of 3 or fewer set horizontally in vertical text
TCY_MAX = 3


@dataclass(frozen=True)
class Segment:
    """A piece of a line: "char" (one character), "tcy" (an ASCII run in one vertical cell),
    "latin" (an ASCII run, upright or turned sideways by the style), or "ruby" (kanji with
    furigana ``ruby``, which is drawn but never labelled)."""

    kind: str
    text: str
    ruby: str = ""


def markup(lines: Sequence[str], vertical: bool, rng: np.random.Generator, chars: Sequence[str],
           furigana: bool = True) -> list[list[Segment]]:  # fmt: skip
    """Each line as segments. ``chars`` (sorted) are what the font draws: furigana use only those
    (none without ``furigana``)."""
    allowed = set(chars)
    kana = {"hiragana": [c for c in HIRAGANA if c in allowed], "katakana": [c for c in KATAKANA if c in allowed],
            "all": [c for c in chars if not c.isspace()]}  # fmt: skip
    word_p = float(rng.choice([0.33, 1.0], p=[0.3, 0.7])) if rng.random() < FURIGANA_P else 0.0
    word_p = word_p if furigana else 0.0
    out = []
    for line in lines:
        segments: list[Segment] = []
        i = 0
        while i < len(line):
            j = i + 1
            if is_kanji(line[i]):
                while j < len(line) and is_kanji(line[j]):
                    j += 1
                group = line[i:j]
                if word_p and rng.random() < word_p:
                    segments.append(Segment("ruby", group, _furigana(group, rng, kana)))
                else:
                    segments += [Segment("char", c) for c in group]
            elif is_ascii(line[i]) and vertical:
                while j < len(line) and is_ascii(line[j]):
                    j += 1
                run = line[i:j]
                tcy = len(run) <= TCY_MAX and rng.random() < TCY_P
                segments.append(Segment("tcy" if tcy else "latin", run))
            else:
                segments.append(Segment("char", line[i]))
            i = j
        out.append(segments)
    return out


def _furigana(group: str, rng: np.random.Generator, kana: dict[str, list[str]]) -> str:
    count = int(np.clip(rng.normal(1.5, 0.5), 1, 4) * len(group))
    source = kana[str(rng.choice(["hiragana", "katakana", "all"], p=[0.8, 0.15, 0.05]))] or kana["all"]
    return "".join(source[k] for k in rng.integers(len(source), size=count))


def label_of(segments: list[list[Segment]]) -> str:
    """The label: every segment's text, line after line, furigana left out."""
    return "".join(s.text for line in segments for s in line)


def furigana_of(segments: list[list[Segment]]) -> list[str]:
    """The furigana drawn, in order (metadata: never part of the label)."""
    return [s.ruby for line in segments for s in line if s.kind == "ruby"]
