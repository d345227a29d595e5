"""Token ids -> text: the vocabulary, BertJapaneseTokenizer's decode, and manga-ocr's post-processing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import jaconv

from ...core.errors import ModelLoadError

SPECIAL_TOKEN_KEYS = ("unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
DEFAULT_SPECIAL_TOKENS = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}


def _token_name(value) -> str | None:
    # tokenizer configs store a special token as a string or as {"content": ...}
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class Vocab:
    """The id -> token table of ``vocab.txt`` and the ids of the special tokens."""

    def __init__(self, tokens: list[str], special_tokens: dict[str, str] | None = None):
        self.tokens = tokens
        names = {**DEFAULT_SPECIAL_TOKENS, **(special_tokens or {})}
        index = {tok: i for i, tok in enumerate(tokens)}
        self.special_ids = frozenset(index[name] for name in names.values() if name in index)
        self.special_tokens = names

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_folder(cls, folder: str | Path) -> Vocab:
        """Read ``vocab.txt`` (one token a line, as BERT's ``load_vocab``) and the special tokens
        named in ``special_tokens_map.json`` or ``tokenizer_config.json`` when present."""
        folder = Path(folder)
        path = folder / "vocab.txt"
        if not path.is_file():
            raise ModelLoadError(f"{folder} has no vocab.txt: it is needed to turn token ids into text")
        with open(path, encoding="utf-8") as f:
            tokens = [line.rstrip("\n") for line in f.readlines()]
        special: dict[str, str] = {}
        for name in ("tokenizer_config.json", "special_tokens_map.json"):
            file = folder / name
            if file.is_file():
                data = json.loads(file.read_text(encoding="utf-8"))
                for key in SPECIAL_TOKEN_KEYS:
                    token = _token_name(data.get(key))
                    if token:
                        special[key] = token
        return cls(tokens, special)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        (folder / "vocab.txt").write_text("".join(t + "\n" for t in self.tokens), encoding="utf-8")
        (folder / "special_tokens_map.json").write_text(
            json.dumps(self.special_tokens, ensure_ascii=False, indent=2), encoding="utf-8"
        )

    def decode(self, ids: Iterable[int]) -> str:
        """Same string as ``BertJapaneseTokenizer.decode(ids, skip_special_tokens=True)``."""
        tokens = []
        unk = self.special_tokens["unk_token"]
        for i in ids:
            i = int(i)
            if i in self.special_ids:
                continue
            tokens.append(self.tokens[i] if 0 <= i < len(self.tokens) else unk)
        return " ".join(tokens).replace(" ##", "").strip()


_DOTS = re.compile("[・.]{2,}")


def post_process(text: str) -> str:
    """manga-ocr's post-processing, in its order: drop all whitespace, ``…`` -> ``...``, runs of
    two or more ``・``/``.`` -> as many ``.``, then half-width ASCII and digits -> full-width."""
    text = "".join(text.split())
    text = text.replace("…", "...")
    text = _DOTS.sub(lambda m: (m.end() - m.start()) * ".", text)
    return jaconv.h2z(text, ascii=True, digit=True)
