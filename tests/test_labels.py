"""LabelEncoder (no MeCab) gives the ids of manga-ocr's BertJapaneseTokenizer (MeCab + characters)."""

import json
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import tokenizer

from mlx_mangaocr.models.ocr.labels import MAX_PIECE_CHARS, LabelEncoder
from mlx_mangaocr.models.ocr.text import Vocab
from testing.synthetic import SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG, vocab_tokens

VOCAB_CHARS = sorted(t for t in vocab_tokens() if len(t) == 1)  # the real manga-ocr characters


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Our encoder and the real tokenizer, over the same tokenizer files (the real vocabulary)."""
    folder = tmp_path_factory.mktemp("labels_tokenizer")
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP), encoding="utf-8")
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab_tokens()), encoding="utf-8")
    return LabelEncoder(Vocab.from_folder(folder)), tokenizer(folder)


def real_tokens(tok, text: str) -> list[str]:
    return tok.convert_ids_to_tokens(tok.encode(text, add_special_tokens=False))


def assert_same(pair, text: str, max_length: int = 8) -> None:
    enc, tok = pair
    ids = tok.encode(text, add_special_tokens=False)
    assert enc.tokens(text) == ids, text
    assert enc.encode(text, max_length) == (
        tok(text, truncation=True, max_length=max_length).input_ids,
        len(ids) > max_length - 2,
    ), (text, max_length)


# What matters: Japanese (the vocabulary), ASCII, full- and half-width forms, whitespace of every kind,
# characters NFKC expands or composes, combining marks, NUL, special-token literals and near misses.
WHITESPACE = list("\t\n\v\f\r \x00\x1c\x1d\x1e\x1f\x85\xa0\u1680\u180e\u2028\u2029\u202f\u205f\u3000\ufeff")
WHITESPACE += [chr(c) for c in range(0x2000, 0x200C)]
BMP = [chr(c) for c in range(0x10000) if not 0xD800 <= c < 0xE000]
NFKC_EXPANDS = [c for c in BMP if len(unicodedata.normalize("NFKC", c)) > 1]  # ㍿, ﷺ, ゛, ´, ①, ...
COMBINING = [c for c in BMP if unicodedata.combining(c)] + ["\u3099", "\u309a"]
FULL_AND_HALF_WIDTH = [chr(c) for c in range(0xFF01, 0xFFEF)]
LITERALS = ["[SEP]", "[CLS]", "[PAD]", "[UNK]", "[MASK]", "[", "]", "[SE", "EP]", "[sep]", "［SEP］", "<unused0>"]
CHARS = st.one_of(
    st.sampled_from(VOCAB_CHARS),
    st.characters(max_codepoint=0x7F),
    st.sampled_from(FULL_AND_HALF_WIDTH),
    st.sampled_from(WHITESPACE),
    st.sampled_from(NFKC_EXPANDS),
    st.sampled_from(COMBINING),
    st.characters(codec="utf-8"),  # all but lone surrogates
)
BIASED_TEXT = st.lists(st.one_of(st.text(CHARS, min_size=1, max_size=8), st.sampled_from(LITERALS)), max_size=12).map(
    "".join
)


@settings(max_examples=1000, deadline=None)
@given(text=st.text(st.characters(codec="utf-8"), max_size=40))
def test_property_tokens_equal_the_tokenizer_on_any_text(pair, text):
    """Characters from the whole Unicode range (all but lone surrogates, see below)."""
    enc, tok = pair
    assert enc.tokens(text) == tok.encode(text, add_special_tokens=False)


@settings(max_examples=1500, deadline=None)
@given(text=BIASED_TEXT, max_length=st.integers(2, 20))
def test_property_tokens_and_encode_equal_the_tokenizer_on_biased_text(pair, text, max_length):
    assert_same(pair, text, max_length)


def test_ids_are_the_tokenizers(pair):
    enc, tok = pair
    ids = (enc.pad_id, enc.unk_id, enc.cls_id, enc.sep_id)
    assert ids == (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 1, 2, 3)


TRUNCATION_TEXTS = ["", "あ", "漢字", "こんにちは", "a[SEP]b c", "ｶﾞ㍿①\u3000x", "\t \n", "今日は良い天気ですね。" * 3]


@pytest.mark.parametrize("text", TRUNCATION_TEXTS)
def test_encode_truncates_as_the_tokenizer(pair, text):
    """Every max_length from 2 (only [CLS] [SEP]) to past the length: at, below and above the limit."""
    enc, tok = pair
    n = len(tok.encode(text, add_special_tokens=False))
    for max_length in range(2, n + 5):
        ids, truncated = enc.encode(text, max_length)
        assert ids == tok(text, truncation=True, max_length=max_length).input_ids, max_length
        assert truncated == (n + 2 > max_length)
        assert len(ids) == min(n + 2, max_length)


def test_encode_truncation_points(pair):
    enc, _ = pair
    text = "あいうえお"  # 5 tokens: fits in 7, not in 6
    assert enc.encode(text, 7) == ([enc.cls_id, *enc.tokens(text), enc.sep_id], False)
    assert enc.encode(text, 8)[1] is False
    ids, truncated = enc.encode(text, 6)
    assert truncated and ids == [enc.cls_id, *enc.tokens(text)[:4], enc.sep_id]


@pytest.mark.parametrize("max_length", [1, 0, -3])
def test_encode_rejects_max_length_below_two(pair, max_length):
    with pytest.raises(ValueError, match="at least 2"):
        pair[0].encode("あ", max_length)


def test_vocab_without_a_special_token_is_refused():
    with pytest.raises(ValueError, match=r"\[SEP\]"):
        LabelEncoder(Vocab(["[PAD]", "[UNK]", "[CLS]", "[MASK]", "あ"]))


# Each way the real tokenizer differs from "one token per character of the text", with the tokens it gives.
DIVERGENCES = {
    # NFKC (MecabTokenizer's, then CharacterTokenizer's): one character may become several, two may become one
    "nfkc expands": ("㍿①½", ["株", "式", "会", "社", "1", "1", "[UNK]", "2"]),  # ½: 1, U+2044, 2
    "nfkc full-width to ASCII": ("ＡＢＣ１２３！", ["A", "B", "C", "1", "2", "3", "!"]),
    "nfkc half-width kana composes": ("ﾊﾟｰﾄｶﾞ", ["パ", "ー", "ト", "ガ"]),
    "nfkc composes a mark": ("か\u3099", ["が"]),
    # MeCab skips tab, LF, VT and space (unidic's SPACE class) between words, and nothing else
    "mecab skips tab lf vt space": ("a\tb\nc\vd e", ["a", "b", "c", "d", "e"]),
    "nfkc makes spaces of these": ("a\u3000b\u00a0c\u2003d\u202fe", ["a", "b", "c", "d", "e"]),
    "other whitespace is a character": (
        "a\rb\fc\x85d\u2028e\u200bf\x1fg",
        ["a", "[UNK]", "b", "[UNK]", "c", "[UNK]", "d", "[UNK]", "e", "[UNK]", "f", "[UNK]", "g"],
    ),
    "only whitespace": (" \t\n\u3000", []),
    # ゛ and ゜ NFKC to a space and a combining mark: the space goes, the mark stays
    "spacing dakuten": ("か゛ハ゜", ["か", "\u3099", "ハ", "\u309a"]),
    # a skipped space still parts two words: the mark after it does not compose (NFKC is per word)
    "space blocks composition": ("か \u3099", ["か", "\u3099"]),
    "acute after a space": ("a \u0301", ["a", "[UNK]"]),
    # MeCab reads a C string: a NUL ends the piece, until the next special-token literal
    "nul ends the piece": ("ab\x00cd", ["a", "b"]),
    "nul at the start": ("\x00abc", []),
    "nul then a special": ("a\x00b[SEP]c\x00d[CLS]e", ["a", "[SEP]", "c", "[CLS]", "e"]),
    # special-token literals in the raw text are their tokens, with no stripping and before any NFKC
    "special literal": ("a[SEP]b", ["a", "[SEP]", "b"]),
    "special literal in spaces": ("a [SEP] b", ["a", "[SEP]", "b"]),
    "special literal in ideographic spaces": ("a\u3000[SEP]\u3000b", ["a", "[SEP]", "b"]),
    "special literal in CR": ("a\r[SEP]\rb", ["a", "[UNK]", "[SEP]", "[UNK]", "b"]),
    "special literal nested": ("[[SEP]]", ["[", "[SEP]", "]"]),
    "special literals back to back": ("[CLS][PAD][MASK][UNK][SEP]", ["[CLS]", "[PAD]", "[MASK]", "[UNK]", "[SEP]"]),
    "special literal then a mark": ("[SEP]\u0301", ["[SEP]", "[UNK]"]),
    "full-width literal is text": ("［SEP］", ["[", "S", "E", "P", "]"]),
    "lower-case literal is text": ("[sep]", ["[", "s", "e", "p", "]"]),
    "broken literal is text": ("[SE\u200bP]", ["[", "S", "E", "[UNK]", "P", "]"]),
    "unused token is text": ("<unused0>", ["<", "u", "n", "u", "s", "e", "d", "0", ">"]),
    # not in the vocabulary: [UNK] each (outside the BMP MeCab sees U+0000's class; U+FFFF is past its table)
    "unknown characters": ("𠮷\u0378\ue000\uffff\U0010ffff😀", ["[UNK]"] * 6),
    # unidic entries holding a space hold full-width characters too, which NFKC never leaves
    "dictionary entries with a space": (
        "（ ゜∀゜ ）Ｎｅｗ\u3000Ｙｏｒｋ",
        ["(", "\u309a", "[UNK]", "\u309a", ")", "N", "e", "w", "Y", "o", "r", "k"],
    ),
    "empty": ("", []),
}


@pytest.mark.parametrize("text,expected", DIVERGENCES.values(), ids=DIVERGENCES.keys())
def test_divergence_from_per_character_lookup(pair, text, expected):
    enc, tok = pair
    assert real_tokens(tok, text) == expected
    assert tok.convert_ids_to_tokens(enc.tokens(text)) == expected
    assert_same(pair, text)


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "[SEP]\udc00", "a\x00\ud800"])
def test_lone_surrogate_raises_as_the_tokenizer(pair, text):
    """fugashi encodes the piece (all of it, NUL or not) as UTF-8: UnicodeEncodeError, a ValueError."""
    enc, tok = pair
    with pytest.raises(ValueError):
        tok.encode(text, add_special_tokens=False)
    with pytest.raises(ValueError, match="surrogate"):
        enc.tokens(text)


def test_long_pieces_equal_the_tokenizer_up_to_the_limit(pair):
    enc, tok = pair
    for text in [
        "漢" * MAX_PIECE_CHARS,
        " " * 32000 + "b" + "\t" * 700 + "c",
        "漢" * 20000 + "[SEP]" + "漢" * 20000,  # the limit is per piece
        "a\x00" + "b" * 40000,  # MeCab never sees what follows the NUL
    ]:
        assert enc.tokens(text) == tok.encode(text, add_special_tokens=False)


def test_long_pieces_past_the_limit_raise(pair):
    """Past MAX_PIECE_CHARS MeCab can drop text or crash: this one drops all after 65535 spaces."""
    enc, tok = pair
    dropped = "a" + " " * 65535 + "bc"
    assert real_tokens(tok, dropped) == ["a"]
    for text in [dropped, "漢" * (MAX_PIECE_CHARS + 1), "ﷺ" * 1821]:  # ﷺ NFKCs to 18 characters
        with pytest.raises(ValueError, match="between special tokens"):
            enc.tokens(text)


def test_mecab_fails_past_the_limit():
    """The reason for the limit: a path costing 2**31 or more fails in MeCab ("too long sentence."),
    which fugashi turns into a crash. Run apart, as it takes the process down."""
    script = (
        "import os, fugashi, unidic_lite\n"
        "d = unidic_lite.DICDIR\n"
        'tagger = fugashi.GenericTagger(f\'-d "{d}" -r "{os.path.join(d, "mecabrc")}"\')\n'
        "try:\n"
        "    tagger('漢' * 400000)\n"
        "    print('parsed')\n"
        "except Exception as e:\n"
        "    print('raised', e)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 or done.stdout.startswith("raised"), (done.returncode, done.stdout)
