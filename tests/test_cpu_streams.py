"""Work shared over the CPU cores (``models/layers.py``): one MLX CPU stream per core, each run on
a thread of its own; the shared-out result equals the one-stream result bit for bit, from any
Python thread (MLX streams belong to the thread that made them)."""

import threading

import mlx.core as mx
import numpy as np

from mlx_mangaocr.models import layers
from mlx_mangaocr.models.layers import SPLIT_SIZE, _gelu_rational, _softmax_poly, on_cpu_streams, split_over_cpu_streams


def test_rows_shared_over_the_streams_give_the_same_values(monkeypatch):
    monkeypatch.setattr(layers, "STREAM_COUNT", 3)  # uneven shares
    monkeypatch.setattr(layers, "_STREAMS", threading.local())
    monkeypatch.setattr(layers, "_made", {"threads": layers.STREAM_THREADS - 2})  # two threads may make streams
    x = mx.array(np.random.default_rng(0).normal(size=(7, 13, SPLIT_SIZE // 91 + 1)).astype(np.float32))
    for fn in (_gelu_rational, _softmax_poly, lambda a: mx.fast.layer_norm(a, None, None, 1e-5)):
        assert mx.array_equal(on_cpu_streams(fn, x), fn(x)).item()
    small = x[:1, :1]  # below SPLIT_SIZE: one call, no streams
    assert mx.array_equal(on_cpu_streams(_softmax_poly, small), _softmax_poly(small)).item()

    def per_row(a, b):
        return (a * b).sum(axis=-1)

    b = mx.array(np.random.default_rng(1).normal(size=x.shape).astype(np.float32))
    assert mx.array_equal(split_over_cpu_streams(per_row, x, b), per_row(x, b)).item()
    assert len(layers.cpu_streams()) == 3
    results, errors = [], []

    def other_thread():
        try:
            results.append(mx.array_equal(on_cpu_streams(_gelu_rational, x), _gelu_rational(x)).item())
        except Exception as e:  # a stream made by another thread raises here
            errors.append(e)

    threads = [threading.Thread(target=other_thread) for _ in range(3)]  # the third runs on its default stream
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [True, True, True] and layers._made["threads"] == layers.STREAM_THREADS


def test_cpu_layer_norm_matches_torch_and_mlx():
    """The detector's ``LayerNorm`` takes another CPU path for large inputs (the row means as
    matrix-vector products): within the fp32 bound of PyTorch's error against float64, and MLX's
    own layer norm for small inputs."""
    import torch
    from oracle import assert_fp32_close

    rng = np.random.default_rng(2)
    x = rng.normal(1.5, 3.0, size=(1, 8400, 256)).astype(np.float32)  # the detector's memory
    norm = layers.LayerNorm(256, eps=1e-5)
    norm.weight, norm.bias = (mx.array(rng.normal(size=256).astype(np.float32)) for _ in range(2))
    ours = np.array(norm(mx.array(x)))
    x64 = x.astype(np.float64)
    exact = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    exact = exact * np.array(norm.weight) + np.array(norm.bias)
    weight, bias = (torch.from_numpy(np.array(p)) for p in (norm.weight, norm.bias))
    theirs = torch.nn.functional.layer_norm(torch.from_numpy(x), (256,), weight, bias, 1e-5).numpy()
    assert_fp32_close(ours, theirs, exact, "LayerNorm")
    small = mx.array(x[:, :10])  # small (not the encoders' or the detector's): MLX's own layer norm
    assert mx.array_equal(norm(small), mx.fast.layer_norm(small, norm.weight, norm.bias, 1e-5)).item()


def test_compiled_sampler_gives_the_uncompiled_values():
    """The deformable sampler runs as one compiled graph; its values are the uncompiled ones, bit for
    bit, bilinear and discrete, on every CPU stream it is shared over."""
    from mlx_mangaocr.models.detection.decoder import _sample_compiled, sample_values

    rng = np.random.default_rng(3)
    shapes, heads, head_dim = ((20, 24), (10, 12), (5, 6)), 4, 8
    tokens = sum(h * w for h, w in shapes)
    table = mx.array(rng.normal(size=(2 * tokens * heads, head_dim)).astype(np.float32))
    loc = mx.array(rng.uniform(-0.1, 1.1, size=(2 * heads, 30, 3, 4, 2)).astype(np.float32))
    weights = mx.array(rng.uniform(size=(2 * heads, 30, 3, 4, 1)).astype(np.float32))
    pairs = mx.arange(2 * heads, dtype=mx.int32)
    first = (pairs // heads) * tokens * heads + pairs % heads
    for discrete in (False, True):
        plain = sample_values(table, loc, weights, first, shapes, discrete, heads)
        shared = split_over_cpu_streams(
            lambda *p, d=discrete: _sample_compiled(table, *p, shapes, d, heads), loc, weights, first
        )
        assert plain.shape == (2 * heads, 30, 1, head_dim) and mx.array_equal(shared, plain).item()
