"""The app-facing API: load_mlx_processor(path).process_image(img) and its options."""

import numpy as np
import pytest
from oracle import hf_generate, pixel_values, tokenizer, upstream_text
from PIL import Image

from mlx_mangaocr import load_mlx_processor
from testing.synthetic import IMAGES


def test_default_decoding_is_the_checkpoints_beam_search(tiny, tiny_processor):
    gen = tiny_processor.generation_config
    assert (gen.num_beams, gen.no_repeat_ngram_size, gen.length_penalty, gen.early_stopping, gen.max_length) == (
        4,
        3,
        2.0,
        True,
        300,
    )
    tok = tokenizer(tiny.folder)
    for path in IMAGES[:4]:
        upstream = hf_generate(tiny.oracle, pixel_values(tiny.folder, path), max_length=300)[0]  # as manga-ocr calls it
        assert tiny_processor.process_image(path) == upstream_text(tok, upstream)


def test_keywords_override_only_themselves(tiny, tiny_processor):
    path = IMAGES[5]
    pixels = pixel_values(tiny.folder, path)
    # num_beams=1 alone keeps no_repeat_ngram_size=3, as generate(num_beams=1) does
    assert tiny_processor.generate_ids([path], num_beams=1) == hf_generate(tiny.oracle, pixels, num_beams=1)
    assert tiny_processor.generate_ids([path], num_beams=1) != tiny_processor.generate_ids(
        [path], num_beams=1, no_repeat_ngram_size=0
    )
    # max_length counts the start token
    short = tiny_processor.generate_ids([path], max_length=5)[0]
    assert len(short) == 5 and short == hf_generate(tiny.oracle, pixels, max_length=5)[0]
    assert tiny_processor.generation_config.num_beams == 4  # the defaults were not changed


def test_every_input_form_gives_the_same_text(tiny_processor):
    path = IMAGES[2]
    img = Image.open(path)
    expected = tiny_processor.process_image(path, num_beams=1)
    for form in (str(path), path.read_bytes(), img, np.asarray(img.convert("RGB")), np.asarray(img.convert("L"))):
        assert tiny_processor.process_image(form, num_beams=1) == expected


def test_process_images_keeps_order_and_accepts_iterables(tiny_processor):
    expected = [tiny_processor.process_image(p, num_beams=1) for p in IMAGES[:5]]
    assert tiny_processor.process_images(IMAGES[:5], batch_size=2, num_beams=1) == expected
    assert list(tiny_processor.iter_images(iter(IMAGES[:5]), batch_size=3, num_beams=1)) == expected


def test_bad_decoding_options(tiny_processor):
    with pytest.raises(TypeError, match="unknown decoding option"):
        tiny_processor.process_image(IMAGES[0], num_beam=2)
    with pytest.raises(ValueError, match="num_beams"):
        tiny_processor.process_image(IMAGES[0], num_beams=0)
    with pytest.raises(ValueError, match="max_length"):
        tiny_processor.process_image(IMAGES[0], max_length=1)
    with pytest.raises(ValueError, match="decoder positions"):
        tiny_processor.process_image(IMAGES[0], max_length=1000)
    with pytest.raises(ValueError, match="batch_size"):
        tiny_processor.process_images(IMAGES[:2], batch_size=0)


def test_load_from_a_converted_folder_and_from_hf_folder_agree(tiny, tiny_processor, tmp_path):
    import convert

    out = convert.convert(str(tiny.folder), tmp_path / "mlx")
    assert load_mlx_processor(out).process_image(IMAGES[7]) == tiny_processor.process_image(IMAGES[7])


def test_confidence_is_the_mean_probability_transformers_gives_the_tokens(tiny, tiny_processor):
    """recognize()'s confidence: the mean over the generated tokens of softmax(logits)[token],
    recomputed from transformers' teacher-forced logits; batched rows of different lengths too."""
    import torch
    from oracle import fp32_bound, pixel_values

    paths = [IMAGES[0], IMAGES[2], IMAGES[9]]
    results = tiny_processor.recognize(paths)
    assert len({len(r.ids) for r in results}) > 1  # rows of different lengths in one batch
    for path, result in zip(paths, results, strict=True):
        pixels, ids = pixel_values(tiny.folder, path), torch.tensor([result.ids[:-1]])
        steps, chosen = torch.arange(len(result.ids) - 1), torch.tensor(result.ids[1:])
        with torch.no_grad():
            logits = tiny.oracle(pixel_values=pixels, decoder_input_ids=ids).logits[0]
            exact = tiny.oracle64(pixel_values=pixels.double(), decoder_input_ids=ids).logits[0]
        confidence = float(torch.softmax(exact, dim=-1)[steps, chosen].mean())
        # Our logits are within fp32_bound of the float64 ones (test_model); a logit error d moves each
        # log-probability by at most 2d, so each probability p by about 2d * p <= 2d, and their mean too.
        # fp32_bound's floor (8 ulps of the largest logit) covers logit - logsumexp's own rounding.
        bound = 2 * fp32_bound(logits.numpy(), exact.numpy())
        assert abs(result.confidence - confidence) <= bound, (result.confidence, confidence, bound)
        assert result.text == tiny_processor.process_image(path)
