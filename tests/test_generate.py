"""Decoding: token ids identical to transformers ``generate``, greedy and beam, and the strings.

Two kinds of check:
- the search code itself, driven by transformers' own logits (``TorchStepper``), must return
  exactly what ``generate`` returns for many settings: this isolates the port of the algorithm
  from floating-point differences;
- the whole MLX pipeline must return the same ids and strings as transformers on the shared
  images, for tiny and full-size checkpoints.
"""

import numpy as np
import pytest
from conftest import Built
from oracle import TorchStepper, generated_images, hf_generate, pixel_values, record, tokenizer, upstream_text

from mlx_mangaocr import MangaOcrProcessor, load_mlx_processor
from mlx_mangaocr.engine.search import banned_ngram_tokens, beam_search, greedy_search
from mlx_mangaocr.models.ocr.config import GenerationConfig
from testing.synthetic import IMAGES, Spec

SETTINGS = [
    {"num_beams": 1},
    {"num_beams": 1, "no_repeat_ngram_size": 0},
    {"num_beams": 1, "no_repeat_ngram_size": 1, "max_length": 40},
    {},  # the checkpoint's own: 4 beams, no_repeat_ngram_size=3, length_penalty=2.0, early stop
    {"num_beams": 3, "length_penalty": 0.5, "early_stopping": False, "max_length": 60},
    {"num_beams": 2, "early_stopping": "never", "no_repeat_ngram_size": 2, "max_length": 50},
    {"num_beams": 4, "max_length": 5},
    {"num_beams": 1, "min_length": 17, "max_length": 17},  # EOS banned: exactly 16 new tokens
    {"num_beams": 4, "min_length": 12, "max_length": 40},
]


def _ours_with_torch_logits(built, pixels, settings):
    gen = GenerationConfig.from_dict(built.oracle.generation_config.to_dict()).updated(**settings)
    if gen.num_beams > 1:
        return beam_search(TorchStepper(built.oracle, pixels, copies=gen.num_beams), gen)
    return greedy_search(TorchStepper(built.oracle, pixels), gen)


@pytest.mark.parametrize("settings", SETTINGS, ids=[str(s) for s in SETTINGS])
def test_search_logic_equals_generate_given_the_same_logits(tiny, settings):
    for path in IMAGES:
        pixels = pixel_values(tiny.folder, path)
        assert _ours_with_torch_logits(tiny, pixels, settings) == hf_generate(tiny.oracle, pixels, **settings)


@pytest.mark.parametrize("settings", [{"num_beams": 1}, {}], ids=["greedy", "beam"])
def test_search_logic_equals_generate_for_a_batch(tiny, settings):
    import torch

    pixels = torch.cat([pixel_values(tiny.folder, p) for p in IMAGES[:5]])
    assert _ours_with_torch_logits(tiny, pixels, settings) == hf_generate(tiny.oracle, pixels, **settings)


def test_banned_ngrams_follow_transformers_rule():
    seq = np.array([2, 5, 6, 7, 5, 6])
    assert banned_ngram_tokens(seq, 3).tolist() == [7]
    assert banned_ngram_tokens(seq, 2).tolist() == [7]  # (6,) was followed by 7
    assert sorted(banned_ngram_tokens(seq, 1).tolist()) == [2, 5, 6, 7]
    assert banned_ngram_tokens(seq[:2], 3).size == 0
    assert banned_ngram_tokens(seq, 0).size == 0


def _compare_on_shared_images(built, processor, label, end_to_end=True):
    """Ids and strings for every shared image, greedy and beam. ``end_to_end`` also runs
    ``process_image`` (a second decode); without it the string comes from the ids."""
    tok = tokenizer(built.folder)
    lengths, matches = {}, {}
    for mode, settings in (("greedy", {"num_beams": 1}), ("beam", {})):
        lengths[mode], matches[mode] = [], 0
        for path in IMAGES:
            theirs = hf_generate(built.oracle, pixel_values(built.folder, path), **settings)[0]
            ours = processor.generate_ids([path], **settings)[0]
            assert ours == theirs, f"{mode} {path.name}"
            text = processor.process_image(path, **settings) if end_to_end else processor.decode(ours)
            assert text == upstream_text(tok, theirs)
            matches[mode] += 1
            lengths[mode].append(len(theirs))
        record(f"{label} {mode}: images with identical token ids and strings", f"{matches[mode]}/{len(IMAGES)}")
        record(f"{label} {mode}: sequence lengths (tokens, start and end included)", lengths[mode])
    return lengths


def test_tiny_ids_and_strings_equal_transformers(tiny, tiny_processor):
    assert tiny_processor.compile_step  # the default: the compiled decode step
    _compare_on_shared_images(tiny, tiny_processor, "tiny")


def test_tiny_uncompiled_step_ids_and_strings_equal_transformers(tiny, tiny_processor):
    _compare_on_shared_images(tiny, MangaOcrProcessor(tiny_processor.checkpoint, compile_step=False), "tiny uncompiled")


def test_full_size_compiled_and_uncompiled_steps_give_the_same_ids(full_processor):
    """A batch of all 14 images (lengths 6 to 300, each row stopping at its own end token)."""
    eager = MangaOcrProcessor(full_processor.checkpoint, compile_step=False)
    for settings in ({"num_beams": 1}, {}):
        assert full_processor.generate_ids(list(IMAGES), **settings) == eager.generate_ids(list(IMAGES), **settings)


def test_tiny_ids_equal_transformers_on_generated_images(tiny, tiny_processor):
    for name, image in generated_images():
        for settings in ({"num_beams": 1}, {}):
            theirs = hf_generate(tiny.oracle, pixel_values(tiny.folder, image), **settings)[0]
            assert tiny_processor.generate_ids([image], **settings)[0] == theirs, name


def test_full_size_ids_and_strings_equal_transformers(full, full_processor):
    lengths = _compare_on_shared_images(full, full_processor, "full-size", end_to_end=False)
    assert min(lengths["greedy"]) < 20 and max(lengths["greedy"]) == 300  # short and max-length outputs


@pytest.mark.parametrize("sep_bias,expected", [(25.0, "short"), (0.0, "max")])
def test_output_lengths_from_one_token_to_max_length(tmp_path, sep_bias, expected):
    """The [SEP] bias steers lengths: an immediate end, and outputs that run to max_length."""
    built = Built(tmp_path, Spec(head_scale=30.0, sep_bias=sep_bias, cross_scale=5.0, seed=3))
    processor = load_mlx_processor(tmp_path)
    for path in IMAGES[:3]:
        for settings in ({"num_beams": 1}, {}):
            theirs = hf_generate(built.oracle, pixel_values(tmp_path, path), **settings)[0]
            assert processor.generate_ids([path], **settings)[0] == theirs
            assert len(theirs) == (2 if expected == "short" else 300)


def test_batched_generation_equals_one_at_a_time(tiny_processor):
    for settings in ({"num_beams": 1}, {}):
        single = [tiny_processor.generate_ids([p], **settings)[0] for p in IMAGES]
        assert tiny_processor.generate_ids(list(IMAGES), **settings) == single
        assert tiny_processor.process_images(IMAGES, batch_size=5, **settings) == [
            tiny_processor.decode(ids) for ids in single
        ]
