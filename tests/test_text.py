"""Token ids -> text equals BertJapaneseTokenizer.decode + upstream post-processing."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import tokenizer, upstream_post_process

from mlx_mangaocr.models.ocr.text import Vocab, post_process

TRICKY = {
    "": "",
    "   ": "",
    "あ い\nう\tえ\u3000お": "あいうえお",
    "そう…": "そう．．．",
    "そう……!": "そう．．．．．．！",
    "・・・": "．．．",
    "え・・・": "え．．．",
    "中・黒": "中・黒",
    "..": "．．",
    ".": "．",
    "・.・": "．．．",
    "abc XYZ 123": "ａｂｃＸＹＺ１２３",
    "!?": "！？",
    "ｶﾀｶﾅ": "カタカナ",  # h2z also widens half-width kana (its default)
    "第30話": "第３０話",
    "～〜": "～〜",
}


@pytest.mark.parametrize("raw,expected", TRICKY.items())
def test_post_process_tricky_strings(raw, expected):
    assert post_process(raw) == expected
    assert post_process(raw) == upstream_post_process(raw)


# Text biased towards what post-processing touches: dots, ellipses, spaces, half-width forms.
TRICKY_TEXT = st.text(alphabet=st.sampled_from(list("あア亜aZ09 .・…!?\u3000\n\t-ｰｶﾞﾟ～")), max_size=30)


@settings(max_examples=500, deadline=None)
@given(raw=TRICKY_TEXT | st.text(max_size=40))
def test_property_post_process_equals_upstream_and_is_stable(raw):
    """Any string (tricky characters, or any Unicode): upstream's result, with no whitespace
    left, and unchanged by a second pass."""
    ours = post_process(raw)
    assert ours == upstream_post_process(raw)
    assert not any(ch.isspace() for ch in ours)
    assert post_process(ours) == ours


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(0, 6143), max_size=60))
def test_property_decode_equals_the_tokenizer_on_any_ids(tiny, ids):
    vocab, tok = _vocab_and_tokenizer(tiny.folder)
    ids = [2, *ids, 3]
    assert vocab.decode(ids) == tok.decode(ids, skip_special_tokens=True)


_LOADED = {}


def _vocab_and_tokenizer(folder):
    if folder not in _LOADED:
        _LOADED[folder] = (Vocab.from_folder(folder), tokenizer(folder))
    return _LOADED[folder]


def test_post_process_is_idempotent_on_its_output():
    for raw in list(TRICKY) + ["そう…です。。。", "a・b..c"]:
        once = post_process(raw)
        assert post_process(once) == once


def test_decode_matches_bert_japanese_tokenizer(tiny):
    vocab = Vocab.from_folder(tiny.folder)
    tok = tokenizer(tiny.folder)
    assert len(vocab) == 6144 == len(tok)
    rng = np.random.default_rng(1)
    sequences = [
        [2, 3],
        [2, 1, 3],  # [UNK] is special: dropped
        [2, 4, 0, 5, 14, 3],  # [MASK], [PAD], <unused*>
        [2, 130, 131, 200, 3],  # '##' word pieces join their left neighbour
        [2, 130, 500, 3],
        [2, 6143, 15, 16, 3],
    ]
    sequences += [[2] + rng.integers(0, 6144, size=n).tolist() + [3] for n in (1, 5, 40, 299)]
    for ids in sequences:
        assert vocab.decode(ids) == tok.decode(ids, skip_special_tokens=True), ids
        assert post_process(vocab.decode(ids)) == upstream_post_process(tok.decode(ids, skip_special_tokens=True))
