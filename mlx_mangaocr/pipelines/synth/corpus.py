"""The text of a sample: phrases built from wordfreq's Japanese word list, or lines of a corpus
file, or random characters; cut to a manga-like length and broken into lines at word boundaries.

Word list: ``wordfreq.top_n_list("ja", ...)`` from the wordfreq package (code Apache-2.0, word
data CC BY-SA 4.0, https://github.com/rspeer/wordfreq). Line breaks: budoux's Japanese parser."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...core.files import read_regular
from .charsets import SynthError, length_distribution

WORDS = 30000  # how many of wordfreq's most frequent Japanese words phrases draw from
RANDOM_P = 0.07  # share of random-character samples (upstream: 1,000 of each package)
MAX_LINES, MAX_LINE_LEN = 10, 20
ENDINGS = ["。", "。", "！", "？", "…", "！？", "！！", "ー！", "…。", "っ！", "", "", "、"]
NO_LINE_START = set("。、，．！？!?）」』】〕〉》ーぁぃぅぇぉっゃゅょァィゥェォッャュョ…‥")
_SPACE = re.compile(r"\s+")


def _wordfreq():
    try:
        import wordfreq
    except ImportError:
        raise SynthError(
            "the word list needs wordfreq: pip install 'mlx-mangaocr[train]', or pass --corpus FILE"
        ) from None
    return wordfreq


class TextSource:
    """Draws sample texts: ``sample(rng, chars)`` gives a text of characters from ``chars`` only.

    ``lines`` (a corpus file's lines) are the source when given, else phrases of wordfreq words
    (content words drawn by Zipf weight, each followed now and then by a particle, sentences ended
    by manga punctuation). ``RANDOM_P`` of samples are random characters."""

    def __init__(self, vocab: frozenset[str], lines: Sequence[str] | None = None):
        import budoux

        self.parser = budoux.load_default_japanese_parser()
        self.lengths, self.length_p = length_distribution()
        self.lines = list(lines) if lines is not None else None
        if self.lines is None:
            words = [w for w in _wordfreq().top_n_list("ja", WORDS) if all(c in vocab for c in w)]
            # short all-kana words near the top are particles and endings: glue, not content
            glue = [w for w in words[:300] if len(w) <= 2 and all("\u3041" <= c <= "\u309f" for c in w)]
            glue_set = set(glue)
            content = [w for w in words if w not in glue_set]
            self.glue, self.content = glue, content
            self.glue_p = _zipf(len(glue), 1.0)
            self.content_p = _zipf(len(content), 0.9)

    def sample(self, rng: np.random.Generator, chars: Sequence[str]) -> tuple[str, str]:
        """(text, kind): a text of ``chars`` only (sorted, as ``FontCharsets`` gives), never empty,
        and its kind: "corpus", "words" or "random"."""
        allowed = set(chars)
        length = int(rng.choice(self.lengths, p=self.length_p))
        if rng.random() >= RANDOM_P and (self.lines is not None or self.content):
            raw = self._corpus_text(rng, length) if self.lines is not None else self._phrase(rng, length)
            text = "".join(c for c in raw if c in allowed)
            if text:
                return text, "corpus" if self.lines is not None else "words"
        return self._random_text(rng, length, chars), "random"

    def _phrase(self, rng: np.random.Generator, length: int) -> str:
        text, sentence = "", 0
        quoted = rng.random() < 0.1
        while len(text) < length:
            text += self.content[rng.choice(len(self.content), p=self.content_p)]
            if self.glue and rng.random() < 0.6:
                text += self.glue[rng.choice(len(self.glue), p=self.glue_p)]
            sentence += 1
            if sentence >= 2 + rng.integers(4):
                text += ENDINGS[rng.integers(len(ENDINGS))]
                sentence = 0
        text = self._cut(text, length)
        return f"「{text}」" if quoted else text

    def _corpus_text(self, rng: np.random.Generator, length: int) -> str:
        line = self.lines[rng.integers(len(self.lines))]
        chunks = self.parser.parse(line)
        start = 0 if rng.random() < 0.5 or len(chunks) < 2 else int(rng.integers(len(chunks)))
        return self._cut("".join(chunks[start:]), length)

    def _cut(self, text: str, length: int) -> str:
        # stop at the first word boundary at or past ``length``, as upstream cuts a corpus line
        out = ""
        for chunk in self.parser.parse(text):
            out += chunk
            if len(out) >= length:
                break
        return out

    @staticmethod
    def _random_text(rng: np.random.Generator, length: int, chars: Sequence[str]) -> str:
        visible = [c for c in chars if not c.isspace()]
        return "".join(visible[i] for i in rng.integers(len(visible), size=length))

    def break_lines(self, text: str, rng: np.random.Generator) -> list[str]:
        """``text`` in lines: word boundaries (budoux), a line length drawn as upstream (Poisson(6),
        at most 20, at least len/10 and here at least 3), words longer than a line cut, no line
        starting with closing punctuation or a small kana."""
        longest = int(np.clip(rng.poisson(6), max(3, len(text) // MAX_LINES), MAX_LINE_LEN))
        lines, line = [], ""
        for chunk in self.parser.parse(text):
            while len(chunk) > longest:  # a "word" longer than a line (random text): cut it
                room = longest - len(line)
                line, chunk = line + chunk[:room], chunk[room:]
                lines.append(line)
                line = ""
            line += chunk
            if len(line) >= longest:
                lines.append(line)
                line = ""
        if line:
            lines.append(line)
        for i in range(1, len(lines)):  # kinsoku: closing marks stay with the line before
            k = i - 1
            while k > 0 and not lines[k]:
                k -= 1
            while lines[i] and lines[i][0] in NO_LINE_START:
                lines[k] += lines[i][0]
                lines[i] = lines[i][1:]
        return [line for line in lines if line]


def read_corpus(path: str | Path, vocab: frozenset[str]) -> list[str]:
    """The lines of a UTF-8 corpus file, whitespace removed, keeping those with a vocabulary
    character. Raises ``SynthError`` when the file is missing, not UTF-8, or has no such line."""
    path = Path(path)
    try:
        text = read_regular(path).decode("utf-8")  # a FIFO or a device is refused, never waited on
    except FileNotFoundError:
        raise SynthError(f"--corpus {path}: no such file") from None
    except IsADirectoryError:
        raise SynthError(f"--corpus {path}: not a regular file, expected a UTF-8 text file") from None
    except UnicodeDecodeError as e:
        raise SynthError(f"--corpus {path}: not UTF-8 text (byte {e.start}: {e.reason})") from None
    except OSError as e:
        raise SynthError(f"--corpus {path}: cannot be read ({e.strerror or e})") from None
    lines = [_SPACE.sub("", line) for line in text.splitlines()]
    lines = [line for line in lines if any(c in vocab for c in line)]
    if not lines:
        raise SynthError(f"--corpus {path}: no line holds a character of the vocabulary (empty after filtering)")
    return lines


def _zipf(n: int, s: float) -> np.ndarray:
    p = 1.0 / np.arange(1, n + 1) ** s
    return p / p.sum()
