"""Text -> label ids without MeCab, equal to manga-ocr's tokenizer.

manga-ocr makes its training labels with transformers' ``BertJapaneseTokenizer`` (``word_tokenizer_type=
"mecab"`` with fugashi + unidic-lite, ``subword_tokenizer_type="character"``, ``do_lower_case=False``). For
one text it:

1. cuts the raw text at the special-token literals ([PAD] [UNK] [CLS] [SEP] [MASK]), leftmost first; each
   literal becomes its token. Nothing is normalized before the cut and no whitespace around a literal is
   stripped (its AddedToken has lstrip=rstrip=False), so ``［SEP］`` stays text while ``a [SEP] b`` is
   ``a``, [SEP], ``b``;
2. gives every other piece to ``MecabTokenizer``: NFKC, then MeCab's words (surfaces);
3. gives every word to ``CharacterTokenizer``: NFKC again, one token per character, [UNK] for a character
   that is not a line of vocab.txt.

The words themselves do not matter, only which characters reach step 3, so this module skips MeCab:

- MeCab's words, joined, are the piece minus the characters MeCab skips before each word: those of
  unidic's SPACE class, which are tab, line feed, vertical tab and space only (carriage return, form feed,
  U+0085, U+2028, U+200B, ... are characters like any other, mostly [UNK]). NFKC has already turned the
  no-break, typographic and ideographic spaces into U+0020, and ゛/゜ (U+309B/C) into a space and a
  combining mark, so those spaces go too. No unidic entry with a space inside can match: the 8 that have
  one also hold characters NFKC never leaves, such as full-width brackets.
- MeCab reads a C string: the piece ends at its first NUL (for that piece only; text after the next
  special literal is read again).
- The second NFKC changes nothing: a word is a substring of NFKC text, which is NFKC text itself. A
  skipped space still separates words: in ``"a \\u0301"`` (a, space, combining acute) the mark is a
  word of its own, an [UNK]; it never meets the a to compose into á.

So the ids are: per piece, NFKC, cut at the first NUL, drop tab/LF/VT/space, look each character up.

What cannot be matched, and raises ValueError instead:

- a lone surrogate anywhere in the text: the real tokenizer raises UnicodeEncodeError (a ValueError)
  when fugashi encodes the piece as UTF-8;
- a piece longer than ``MAX_PIECE_CHARS`` (32767) characters after NFKC and before its first NUL. Up to
  that length MeCab cannot go wrong: a path costs at most 65534 per word (a short connection cost
  plus a short word cost), so it stays under MeCab's 2**31 - 1 ceiling, and a word's offset (an
  unsigned short of skipped spaces plus the word, in bytes) cannot wrap. Beyond it the real tokenizer can crash the
  process (MeCab's "too long sentence." turns into a segfault in fugashi: 400000 × 漢 does) or drop
  all text after a run of 65535 spaces or more, depending on the text.
"""

from __future__ import annotations

import re
import unicodedata

from .text import Vocab

MAX_PIECE_CHARS = 32767
_MECAB_SKIPS = str.maketrans("", "", "\t\n\v ")  # unidic's char.def SPACE class
_SURROGATE = re.compile("[\ud800-\udfff]")


class LabelEncoder:
    """Text -> label ids, as BertJapaneseTokenizer (MeCab words, then characters) gives them."""

    def __init__(self, vocab: Vocab):
        self._ids = {token: i for i, token in enumerate(vocab.tokens)}  # a repeated line: the last id, as BERT
        special = {}
        for key, token in vocab.special_tokens.items():
            if token not in self._ids:
                raise ValueError(f"the vocabulary has no {key} {token!r}")
            special[token] = self._ids[token]
        self._special = special
        self.unk_id = special[vocab.special_tokens["unk_token"]]
        self.cls_id = special[vocab.special_tokens["cls_token"]]
        self.sep_id = special[vocab.special_tokens["sep_token"]]
        self.pad_id = special[vocab.special_tokens["pad_token"]]
        # longest first: leftmost-longest, as transformers' trie
        names = sorted(special, key=len, reverse=True)
        self._split = re.compile("(" + "|".join(re.escape(name) for name in names) + ")")

    def tokens(self, text: str) -> list[int]:
        """``tokenizer.encode(text, add_special_tokens=False)``."""
        surrogate = _SURROGATE.search(text)
        if surrogate:
            raise ValueError(
                f"text holds a lone surrogate U+{ord(surrogate.group()):04X} at index {surrogate.start()}: "
                "the real tokenizer fails to encode it as UTF-8 for MeCab"
            )
        ids: list[int] = []
        for i, piece in enumerate(self._split.split(text)):
            if i % 2:  # re.split puts the separators (the special literals) at odd places
                ids.append(self._special[piece])
                continue
            piece = unicodedata.normalize("NFKC", piece).partition("\0")[0]
            if len(piece) > MAX_PIECE_CHARS:
                raise ValueError(
                    f"text has {len(piece)} characters between special tokens, over {MAX_PIECE_CHARS}: "
                    "MeCab's result is not defined there (the real tokenizer can crash or drop text)"
                )
            ids.extend(self._ids.get(char, self.unk_id) for char in piece.translate(_MECAB_SKIPS))
        return ids

    def encode(self, text: str, max_length: int) -> tuple[list[int], bool]:
        """``tokenizer(text, truncation=True, max_length=max_length).input_ids`` ([CLS], the first
        ``max_length - 2`` tokens, [SEP]; no padding) and whether tokens were cut off."""
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2 ([CLS] and [SEP]), not {max_length}")
        ids = self.tokens(text)
        keep = max_length - 2
        return [self.cls_id, *ids[:keep], self.sep_id], len(ids) > keep
