"""The MLX model against transformers: every encoder hidden state, and decoder logits.

Tolerances (fp32, see ``oracle.fp32_bound``): both sides are compared with the same model run by
PyTorch in float64, and MLX's max error may be at most 4x PyTorch's own fp32 error on the same
inputs (floored at one ulp of the largest value). Summation order and the erf/exp kernels move
either side by a few ulps of the magnitudes summed, on any CPU; a wrong layer, mask or bias errs by
1e-2 to 1. The figures printed at the end of a run give MLX's worst error as a multiple of PyTorch's.
"""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
import torch
from oracle import U, assert_fp32_close, pixel_values, record

from mlx_mangaocr.engine.steppers import CompiledStepper
from mlx_mangaocr.loading.checkpoints import read_weights
from mlx_mangaocr.models.ocr.config import GenerationConfig
from testing.synthetic import IMAGES


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_every_encoder_hidden_state_matches(size, request):
    built = request.getfixturevalue(size)
    processor = request.getfixturevalue(f"{size}_processor")
    worst = 0.0
    for path in IMAGES:
        pixels = pixel_values(built.folder, path)
        with torch.no_grad():
            theirs = built.oracle.encoder(pixels, output_hidden_states=True)
            exact = built.oracle64.encoder(pixels.double(), output_hidden_states=True)
        ours_last, ours_states = processor.model.encoder(mx.array(processor.image_processor(path)[None]), True)
        assert len(ours_states) == len(theirs.hidden_states) == processor.config.encoder.num_hidden_layers + 1
        layers = zip(
            ours_states + [ours_last],
            list(theirs.hidden_states) + [theirs.last_hidden_state],
            list(exact.hidden_states) + [exact.last_hidden_state],
            strict=True,
        )
        for i, (ours, ref32, ref64) in enumerate(layers):
            ratio = assert_fp32_close(np.array(ours), ref32.numpy(), ref64.numpy(), f"{path.name} state {i}")
            worst = max(worst, ratio)
    record(f"encoder hidden states, MLX error / PyTorch's fp32 error, worst ({size}, 14 images, every layer)", worst)


def _teacher_forced_logits(built, processor, path, ids):
    pixels = pixel_values(built.folder, path)
    with torch.no_grad():
        theirs = built.oracle(pixel_values=pixels, decoder_input_ids=torch.tensor([ids])).logits[0].numpy()
        exact = built.oracle64(pixel_values=pixels.double(), decoder_input_ids=torch.tensor([ids])).logits[0].numpy()
    hidden = processor.model.encode(mx.array(processor.image_processor(path)[None]))
    cross = processor.model.cross_kv(hidden)
    cache = processor.model.decoder.make_cache(1, len(ids))
    full_forward = np.array(processor.model.decoder(mx.array([ids]), cache, cross, last_only=False))[0]
    cache = processor.model.decoder.make_cache(1, len(ids))
    stepwise = np.stack([np.array(processor.model.decoder(mx.array([[t]]), cache, cross))[0] for t in ids])
    compiled = CompiledStepper(processor.model, hidden, GenerationConfig(max_length=len(ids) + 1))
    compiled_steps = np.stack([np.array(compiled(np.array([t])))[0] for t in ids])
    return theirs, exact, full_forward, stepwise, compiled_steps


@pytest.mark.parametrize("size", ["tiny", "full"])
def test_per_step_logits_match_and_cached_decoding_equals_full_forward(size, request):
    built = request.getfixturevalue(size)
    processor = request.getfixturevalue(f"{size}_processor")
    rng = np.random.default_rng(0)
    worst = worst_compiled = 0.0
    for path in IMAGES[:4]:
        ids = [2] + rng.integers(5, 6144, size=40).tolist()
        theirs, exact, full_forward, stepwise, compiled = _teacher_forced_logits(built, processor, path, ids)
        # A full causal pass, one step at a time over the cache, and the compiled fixed-shape step
        # (whole-capacity attention, masked; fused kernels round differently) are each as close to
        # the float64 logits as PyTorch's fp32 logits are.
        for name, ours in (("full forward", full_forward), ("stepwise", stepwise), ("compiled", compiled)):
            ratio = assert_fp32_close(ours, theirs, exact, f"{path.name} {name}")
            worst = max(worst, ratio) if name == "stepwise" else worst
            assert (ours.argmax(-1) == theirs.argmax(-1)).all(), name
        worst_compiled = max(worst_compiled, float(np.abs(compiled - stepwise).max()))
    record(f"per-step logits, MLX error / PyTorch's fp32 error, worst ({size}, 4 images x 41 steps)", worst)
    record(f"per-step logits, max |compiled step - uncompiled step| ({size})", worst_compiled)


def test_tied_head_and_bin_weights(tiny_tied_bin):
    from mlx_mangaocr import load_mlx_processor

    processor = load_mlx_processor(tiny_tied_bin.folder)
    assert processor.config.tie_word_embeddings
    head = processor.model.decoder.cls.predictions.decoder.weight
    emb = processor.model.decoder.bert.embeddings.word_embeddings.weight
    assert mx.array_equal(head, emb)
    ids = [2, 100, 4000, 37, 5000]
    theirs, exact, full_forward, *_ = _teacher_forced_logits(tiny_tied_bin, processor, IMAGES[0], ids)
    assert_fp32_close(full_forward, theirs, exact, "tied head")


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
    """The CPU path's rational erf GELU (used for large inputs) equals the exact GELU to float32
    rounding: gelu = 0.5 x (1 + erf), with erf within a few ulps (~4u) of the true value, so the
    error is at most ~0.5 |x| 4u plus the rounding of the products (~2u |x|): bound 8u |x|,
    elementwise, against a float64 GELU (independent of the CPU's own erf)."""
    from mlx_mangaocr.models import layers

    x = np.concatenate([np.linspace(-12, 12, 200_001), np.random.default_rng(0).normal(0, 3, 200_000)]).astype(
        np.float32
    )
    exact = torch.nn.functional.gelu(torch.from_numpy(x).double()).numpy()
    for fn in (layers.gelu, layers._gelu_rational):
        error = np.abs(np.array(fn(mx.array(x))).astype(np.float64) - exact)
        assert (error <= 8 * U * np.abs(x)).all(), float((error / np.maximum(np.abs(x), 1e-30)).max())
    small = mx.array(x[:1000])  # below the size where the compiled path pays: MLX's own erf GELU
    assert mx.array_equal(layers.gelu(small), nn.gelu(small))


def test_cpu_attention_softmax_equals_torch():
    """The CPU path's attention (polynomial exp in the softmax, used for the encoder) equals torch's
    attention, over the whole range of scores; small inputs keep MLX's fused attention."""
    from mlx_mangaocr.models import layers

    rng = np.random.default_rng(0)
    q, k, v = (rng.normal(0, 4, size=(2, 12, 197, 64)).astype(np.float32) for _ in range(3))
    reference = torch.nn.functional.scaled_dot_product_attention(*map(torch.from_numpy, (q, k, v)), scale=0.125)
    exact = torch.nn.functional.scaled_dot_product_attention(
        *(torch.from_numpy(a).double() for a in (q, k, v)), scale=0.125
    )
    ours = np.array(layers.attention(mx.array(q), mx.array(k), mx.array(v), 0.125))
    # Scores of ~+-16 amplify the dot products' rounding in the softmax: each fp32 side errs by ~1e-4
    # here, so the bound is PyTorch's own error (see oracle.fp32_bound), not a fixed number.
    ratio = assert_fp32_close(ours, reference.numpy(), exact.numpy(), "attention")
    record("CPU attention, MLX error / PyTorch's fp32 error", ratio)
    # The polynomial exp is within 2 float32 ulps (2 * 2^-23 relative) of the exact exp.
    x = np.concatenate([np.linspace(-87, 88, 100_001), rng.normal(0, 10, 100_000)]).astype(np.float32)
    exp = np.exp(x.astype(np.float64))
    error = np.abs(np.array(layers._exp_poly(mx.array(x))).astype(np.float64) - exp)
    assert (error <= 4 * U * exp).all()
    record("polynomial exp, worst error in float32 ulps (2^-23 relative)", float((error / exp).max() / (2 * U)))
    small = [mx.array(a[:, :, :5]) for a in (q, k, v)]
    assert mx.array_equal(layers.attention(*small, 0.125), mx.fast.scaled_dot_product_attention(*small, scale=0.125))


def test_cpu_attention_with_fewer_queries_than_keys_equals_torch():
    """The CPU path with fewer queries than keys: the OCR decoder's cross-attention during a batched
    decode step (one query a row over 197 encoder tokens) and 300 queries over 400 keys, both large
    enough to take the column layout."""
    from mlx_mangaocr.models import layers

    rng = np.random.default_rng(1)
    for queries, keys, rows in ((1, 197, 48), (300, 400, 1)):
        q = rng.normal(0, 2, size=(rows, 8, queries, 32)).astype(np.float32)
        k, v = (rng.normal(0, 2, size=(rows, 8, keys, 32)).astype(np.float32) for _ in range(2))
        assert layers._cpu_fast_path(rows * 8 * queries * keys, mx.float32)  # the path under test
        args = [torch.from_numpy(a) for a in (q, k, v)]
        reference = torch.nn.functional.scaled_dot_product_attention(*args, scale=32**-0.5)
        exact = torch.nn.functional.scaled_dot_product_attention(*(a.double() for a in args), scale=32**-0.5)
        ours = np.array(layers.attention(mx.array(q), mx.array(k), mx.array(v), 32**-0.5))
        assert ours.shape == (rows, 8, queries, 32)
        assert_fp32_close(ours, reference.numpy(), exact.numpy(), f"attention, {queries} queries over {keys} keys")
