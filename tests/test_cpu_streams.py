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
