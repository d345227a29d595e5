"""The MLX model against transformers: every encoder hidden state, and decoder logits.

Tolerances (fp32): the two sides differ only in summation order and in the erf/exp kernels, so
differences stay within a few float32 ulps of the values' magnitude. Measured worst cases on the
shared images (printed at the end of each run): encoder states 7.4e-6 (full size, values up to
~10), logits 9.2e-5 (full size, logits up to ~70 in magnitude: 1.3e-6 relative). The bounds
are ~3-6x those, far below what a wrong layer, mask or bias gives (order 0.1 to 1).
"""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
from oracle import pixel_values, record

from benchmarks.synthetic import IMAGES
from mlx_mangaocr.config import GenerationConfig
from mlx_mangaocr.generate import CompiledStepper
from mlx_mangaocr.loading import read_weights

ENCODER_ATOL = 5e-5
LOGITS_ATOL = 3e-4


def _encoder_states(processor, built, path):
    pixels = pixel_values(built.folder, path)
    with torch.no_grad():
        theirs = built.oracle.encoder(pixels, output_hidden_states=True)
    ours_last, ours_states = processor.model.encoder(mx.array(processor.image_processor(path)[None]), True)
    return theirs, ours_last, ours_states


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_every_encoder_hidden_state_matches(size, request):
    built = request.getfixturevalue(size)
    processor = request.getfixturevalue(f"{size}_processor")
    worst = 0.0
    for path in IMAGES:
        theirs, ours_last, ours_states = _encoder_states(processor, built, path)
        assert len(ours_states) == len(theirs.hidden_states) == processor.config.encoder.num_hidden_layers + 1
        for ours, ref in zip(
            ours_states + [ours_last], list(theirs.hidden_states) + [theirs.last_hidden_state], strict=True
        ):
            diff = np.abs(np.array(ours) - ref.numpy()).max()
            worst = max(worst, float(diff))
    record(f"encoder hidden states, max |MLX - torch| ({size}, 14 images, every layer)", worst)
    assert worst < ENCODER_ATOL, worst


def _teacher_forced_logits(built, processor, path, ids):
    pixels = pixel_values(built.folder, path)
    with torch.no_grad():
        theirs = built.oracle(pixel_values=pixels, decoder_input_ids=torch.tensor([ids])).logits[0].numpy()
    hidden = processor.model.encode(mx.array(processor.image_processor(path)[None]))
    cross = processor.model.cross_kv(hidden)
    cache = processor.model.decoder.make_cache(1, len(ids))
    full_forward = np.array(processor.model.decoder(mx.array([ids]), cache, cross, last_only=False))[0]
    cache = processor.model.decoder.make_cache(1, len(ids))
    stepwise = np.stack([np.array(processor.model.decoder(mx.array([[t]]), cache, cross))[0] for t in ids])
    compiled = CompiledStepper(processor.model, hidden, GenerationConfig(max_length=len(ids) + 1))
    compiled_steps = np.stack([np.array(compiled(np.array([t])))[0] for t in ids])
    return theirs, full_forward, stepwise, compiled_steps


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_per_step_logits_match_and_cached_decoding_equals_full_forward(size, request):
    built = request.getfixturevalue(size)
    processor = request.getfixturevalue(f"{size}_processor")
    rng = np.random.default_rng(0)
    worst = worst_compiled = 0.0
    for path in IMAGES[:4]:
        ids = [2] + rng.integers(5, 6144, size=40).tolist()
        theirs, full_forward, stepwise, compiled = _teacher_forced_logits(built, processor, path, ids)
        np.testing.assert_allclose(full_forward, theirs, rtol=0, atol=LOGITS_ATOL)
        np.testing.assert_allclose(stepwise, theirs, rtol=0, atol=LOGITS_ATOL)
        # One step at a time over the cache equals one full causal pass (up to GEMM summation order).
        np.testing.assert_allclose(stepwise, full_forward, rtol=0, atol=LOGITS_ATOL)
        assert (stepwise.argmax(-1) == theirs.argmax(-1)).all()
        # The compiled fixed-shape step (whole-capacity attention, masked; fused kernels round
        # differently) stays within the same bound.
        np.testing.assert_allclose(compiled, theirs, rtol=0, atol=LOGITS_ATOL)
        np.testing.assert_allclose(compiled, stepwise, rtol=0, atol=LOGITS_ATOL)
        assert (compiled.argmax(-1) == theirs.argmax(-1)).all()
        worst = max(worst, float(np.abs(stepwise - theirs).max()))
        worst_compiled = max(worst_compiled, float(np.abs(compiled - stepwise).max()))
    record(f"per-step logits, max |MLX - torch| ({size}, 4 images x 41 steps)", worst)
    record(f"per-step logits, max |compiled step - uncompiled step| ({size})", worst_compiled)


def test_tied_head_and_bin_weights(tiny_tied_bin):
    from mlx_mangaocr import load_mlx_processor

    processor = load_mlx_processor(tiny_tied_bin.folder)
    assert processor.config.tie_word_embeddings
    head = processor.model.decoder.cls.predictions.decoder.weight
    emb = processor.model.decoder.bert.embeddings.word_embeddings.weight
    assert mx.array_equal(head, emb)
    ids = [2, 100, 4000, 37, 5000]
    theirs, full_forward, *_ = _teacher_forced_logits(tiny_tied_bin, processor, IMAGES[0], ids)
    np.testing.assert_allclose(full_forward, theirs, rtol=0, atol=LOGITS_ATOL)


@pytest.mark.parametrize("name", ["tiny", "tiny_tied_bin"])
def test_sanitize_is_idempotent(name, request):
    from mlx_mangaocr import load_mlx_processor

    built = request.getfixturevalue(name)
    model = load_mlx_processor(built.folder).model
    once = model.sanitize(read_weights(built.folder))
    twice = model.sanitize(once)
    assert once.keys() == twice.keys()
    for key in once:
        assert mx.array_equal(once[key], twice[key]), key
    assert not any(k.endswith("position_ids") or ".pooler." in k for k in once)
    assert once["encoder.embeddings.patch_embeddings.projection.weight"].shape[-1] == 3  # OHWI


def test_transformers5_vit_names_are_accepted(tiny, tiny_processor):
    """A checkpoint re-saved by transformers 5 may carry its new ViT names."""
    model = tiny_processor.model
    legacy = model.sanitize(read_weights(tiny.folder))
    renamed = {}
    for name, value in read_weights(tiny.folder).items():
        name = name.replace("encoder.encoder.layer.", "encoder.layers.").replace(
            ".attention.attention.query.", ".attention.q_proj."
        )
        name = name.replace(".intermediate.dense.", ".mlp.fc1.") if name.startswith("encoder.layers.") else name
        renamed[name] = value
    assert any(".q_proj." in k for k in renamed)
    assert model.sanitize(renamed).keys() == legacy.keys()


def test_cpu_gelu_equals_exact_gelu():
    """The CPU path's rational erf GELU (used for large inputs) equals torch's exact GELU."""
    from mlx_mangaocr import layers

    x = np.concatenate([np.linspace(-12, 12, 200_001), np.random.default_rng(0).normal(0, 3, 200_000)]).astype(
        np.float32
    )
    reference = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    for fn in (layers.gelu, layers._gelu_rational):
        ours = np.array(fn(mx.array(x)))
        np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-6)
    small = mx.array(x[:1000])  # below the size where the compiled path pays: MLX's own erf GELU
    assert mx.array_equal(layers.gelu(small), nn.gelu(small))


def test_cpu_attention_softmax_equals_torch():
    """The CPU path's attention (polynomial exp in the softmax, used for the encoder) equals torch's
    attention, over the whole range of scores; small inputs keep MLX's fused attention."""
    from mlx_mangaocr import layers

    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(0, 4, size=(2, 12, 197, 64)).astype(np.float32) for _ in range(3))
    reference = torch.nn.functional.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), scale=0.125)
    ours = np.array(layers.attention(mx.array(q), mx.array(k), mx.array(v), 0.125))
    np.testing.assert_allclose(ours, reference.numpy(), rtol=0, atol=2e-5)
    x = np.concatenate([np.linspace(-87, 88, 100_001), rng.normal(0, 10, 100_000)]).astype(np.float32)
    np.testing.assert_allclose(np.array(layers._exp_poly(mx.array(x))), np.exp(x), rtol=3e-7, atol=0)
    small = [mx.array(a[:, :, :5]) for a in (q, k, v)]
    assert mx.array_equal(layers.attention(*small, 0.125), mx.fast.scaled_dot_product_attention(*small, scale=0.125))
