"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import contextlib
import os
import threading

import mlx.core as mx
import mlx.nn as nn

# erf(x) ~ x * P(x^2) / Q(x^2) on [-4, 4] (saturated outside): the float32 rational approximation
# of Eigen and XLA, accurate to a few ulps. Only multiplies, adds and one divide.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)  # fmt: skip
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)  # fmt: skip


def _gelu_rational(x: mx.array) -> mx.array:
    z = x * 0.7071067811865476
    z = mx.where(z < -4.0, -4.0, mx.where(z > 4.0, 4.0, z))  # clip, as selects: see ``_exp_poly``
    z2 = z * z
    p = _ERF_P[0]
    for c in _ERF_P[1:]:
        p = p * z2 + c
    q = _ERF_Q[0]
    for c in _ERF_Q[1:]:
        q = q * z2 + c
    return 0.5 * x * (1.0 + z * p / q)


# exp(x) = 2^n * exp(r), n = round(x / ln 2), r = x - n ln 2 (Cody-Waite, ln 2 split in two so that
# r is exact), |r| <= ln(2)/2: exp(r) by its degree-7 Taylor series (error < 1e-8 relative), 2^n by
# writing the float32 exponent bits. Within 2 float32 ulps of exp.
# Written so that the C++ that ``mx.compile`` generates on the CPU vectorizes: MLX's maximum and
# minimum test for NaN (a branch, so g++ leaves the loop scalar) and its floor is a libm call, so the
# clamp is two selects and n is rounded by adding and subtracting 1.5 * 2^23 (exact for |x / ln 2| <
# 2^22; a tie goes to even rather than up, which keeps |r| <= ln(2)/2). 720k values: 1.2 ms on one
# CPU stream, MLX's own exp 10.2 ms (``benchmarks.detector_ops``).
_LOG2E = 1.4426950408889634
_LN2_HI, _LN2_LO = 0.693359375, -2.12194440e-4
_EXP_C = (1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 1 / 2, 1.0, 1.0)
_ROUND = 12582912.0  # 1.5 * 2^23: x + _ROUND - _ROUND is x rounded to an integer, in float32


def _exp_poly(x: mx.array) -> mx.array:
    x = mx.where(x < -87.0, -87.0, x)
    x = mx.where(x > 88.0, 88.0, x)
    n = (x * _LOG2E + _ROUND) - _ROUND
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _EXP_C[0]
    for c in _EXP_C[1:]:
        p = p * r + c
    return p * mx.view((n.astype(mx.int32) + 127) << 23, mx.float32)


def _softmax_poly(x: mx.array) -> mx.array:
    e = _exp_poly(x - mx.max(x, axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _exp_shifted_poly(x: mx.array, shift: mx.array) -> mx.array:
    return _exp_poly(x - shift)


def _exp_shifted(x: mx.array, shift: mx.array) -> mx.array:
    return mx.exp(x - shift)


def _silu_poly(x: mx.array) -> mx.array:
    return x / (1 + _exp_poly(-x))


_PLAIN = threading.local()  # set by ``differentiable()`` in the thread that traces a training step


@contextlib.contextmanager
def differentiable():
    """Within it, gelu, softmax and attention are MLX's plain ops, whose gradients MLX computes
    exactly: the fused CPU paths below are made for inference (their polynomial exp uses bit
    operations, which have no gradient). Training traces its step inside it."""
    before = getattr(_PLAIN, "on", False)
    _PLAIN.on = True
    try:
        yield
    finally:
        _PLAIN.on = before


def _cpu_fast_path(size: int, dtype: mx.Dtype, min_size: int = 65536) -> bool:
    """Whether the fused CPU paths below pay: float32 on the CPU, and large enough that a compiled
    call costs less than it saves (the encoder, not a decode step); never while differentiating."""
    return (
        size >= min_size
        and dtype == mx.float32
        and mx.default_device().type == mx.DeviceType.cpu
        and not getattr(_PLAIN, "on", False)
    )


SPLIT_SIZE = 2**18  # inputs this large are shared out over the cores (encoders, the detector; not a decode step)
STREAM_COUNT = min(os.cpu_count() or 1, 8)
STREAM_THREADS = 4  # threads that get streams of their own; MLX keeps a stream's thread for good
_STREAMS = threading.local()  # MLX streams belong to the thread that made them
_made = {"threads": 0}  # threads that have made their streams
_made_lock = threading.Lock()


def cpu_streams() -> list[mx.Stream]:
    """One MLX CPU stream per core (at most 8), made once per thread (a stream can only be used
    by the thread that made it): MLX runs each CPU stream on a thread of its own, while one
    stream's elementwise kernels use one core. The first ``STREAM_THREADS`` threads to ask get
    them; later ones (a server's thread per request) get none and run on their default stream."""
    streams = getattr(_STREAMS, "streams", None)
    if streams is None:
        with _made_lock:
            allowed = _made["threads"] < STREAM_THREADS
            _made["threads"] += allowed
        streams = [mx.new_stream(mx.cpu) for _ in range(STREAM_COUNT)] if allowed else []
        _STREAMS.streams = streams
    return streams


def on_cpu_streams(fn, x: mx.array) -> mx.array:
    """``fn`` applied to ``x`` row by row (rows of its last axis); on the CPU, for inputs of
    ``SPLIT_SIZE`` or more, the rows are split over the CPU streams so that the cores share the
    work: the same values as ``fn(x)``. ``fn`` must treat each row on its own (elementwise, or a
    reduction over the last axis, as softmax and LayerNorm)."""
    if x.ndim == 0 or x.size < SPLIT_SIZE:
        return fn(x)
    return split_over_cpu_streams(fn, x.reshape(-1, x.shape[-1])).reshape(x.shape)


def split_over_cpu_streams(fn, *arrays: mx.array) -> mx.array:
    """``fn(*arrays)`` for arrays that share their first axis and a ``fn`` that treats each index
    of it on its own: on the CPU the first axis is split over the CPU streams, and the parts'
    results (same values) concatenated; elsewhere one call."""
    streams = cpu_streams() if mx.default_device().type == mx.DeviceType.cpu else []
    size = arrays[0].shape[0]
    count = min(len(streams), size)
    if count < 2:
        return fn(*arrays)
    bounds = [size * i // count for i in range(count + 1)]
    parts = []
    for stream, start, stop in zip(streams, bounds, bounds[1:], strict=False):
        with mx.stream(stream):
            parts.append(fn(*(a[start:stop] for a in arrays)))
    return mx.concatenate(parts, axis=0)


class _CpuFused:
    """A function fused by ``mx.compile`` for large float32 inputs on the CPU, where MLX's CPU
    backend runs erf and exp element by element several times slower than the rest of a layer.
    Small inputs (below ``min_size`` values: a decode step), other dtypes and Metal/CUDA go to
    ``fallback``; so does every call once ``mx.compile`` has failed (it needs a C++ compiler at run
    time on the CPU). ``split`` shares the work out over the CPU streams: by rows of the last axis
    (``on_cpu_streams``, one input) or along the first axis (``split_over_cpu_streams``)."""

    def __init__(self, fn, fallback, min_size: int = 65536, split=on_cpu_streams):
        self.fn, self.compiled, self.fallback, self.ok = fn, mx.compile(fn), fallback, True
        self.min_size, self.split = min_size, split

    def __call__(self, *xs: mx.array) -> mx.array:
        if not _cpu_fast_path(xs[0].size, xs[0].dtype, self.min_size):
            return self.fallback(*xs)
        if self.ok:
            try:
                return self.split(self.compiled, *xs)
            except (RuntimeError, ValueError):
                self.ok = False
        return self.split(self.fn, *xs)


_gelu = _CpuFused(_gelu_rational, nn.gelu)
# from 4096 values: the detector's deformable attention weights (28.8k values a layer) take 0.15 ms
# through the compiled softmax, 0.43 ms through MLX's (``benchmarks.detector_ops``)
_softmax = _CpuFused(_softmax_poly, lambda x: mx.softmax(x, axis=-1, precise=True), min_size=4096)
_exp_minus = _CpuFused(_exp_shifted_poly, _exp_shifted, min_size=0, split=split_over_cpu_streams)
_silu = _CpuFused(_silu_poly, nn.silu)


def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU, as Hugging Face's "gelu"; on the CPU, for large inputs (the encoder),
    through the rational erf above, equal to float32 rounding."""
    return _gelu(x)


def softmax(x: mx.array) -> mx.array:
    """Softmax over the last axis; on the CPU, for float32 inputs of 4096 values or more, through
    the fused polynomial exp above, equal to float32 rounding (MLX's ``precise`` softmax otherwise)."""
    return _softmax(x)


def silu(x: mx.array) -> mx.array:
    """``x * sigmoid(x)``; on the CPU, for large inputs (the detector's maps), through the fused
    polynomial exp above, equal to float32 rounding."""
    return _silu(x)


def attention(
    q: mx.array, k: mx.array, v: mx.array, scale: float, mask: mx.array | None = None, dropout: Dropout | None = None
) -> mx.array:
    """Attention over (B, heads, L, d) arrays: ``mx.fast.scaled_dot_product_attention``, except on
    the CPU for large unmasked float32 score matrices (the encoders, the detector's decoder, the OCR
    decoder's cross-attention for batches of 28 rows or more), where
    ``_attention_by_columns`` runs it (same values to float32 rounding; 3.5 against 11.5 ms for the
    detector decoder's self-attention, ``benchmarks.detector_ops``), and in training with attention
    dropout, which drops attention weights as transformers does."""
    if dropout is not None and dropout.active:
        scores = (q * scale) @ k.swapaxes(-1, -2)
        if mask is not None:
            scores = scores + mask
        return dropout(mx.softmax(scores, axis=-1)) @ v
    if mask is not None:
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
    scores_size = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2]
    if not _cpu_fast_path(scores_size, q.dtype):
        return mx.fast.scaled_dot_product_attention(q, k, v, scale=scale)
    return _attention_by_columns(q, k, v, scale)


def _attention_by_columns(q: mx.array, k: mx.array, v: mx.array, scale: float) -> mx.array:
    """``softmax(q k^T scale) v`` with the scores transposed, (B, heads, keys, queries): a query's
    scores run down a column, so the softmax's max and sum are reductions over the second-last axis,
    which MLX's CPU backend runs about 3x faster than over the last (max of 720k scores: 0.15
    against 0.48 ms, ``benchmarks.detector_ops``); the exp goes through the fused polynomial, and
    the sum divides the weighted values (queries x head size) rather than the scores (queries x keys)."""
    b, h, lq, _ = q.shape
    lk = k.shape[2]
    scores = k @ (q * scale).swapaxes(-1, -2)
    top = scores.max(axis=-2, keepdims=True)
    weights = _exp_minus(scores.reshape(b * h, lk, lq), top.reshape(b * h, 1, lq)).reshape(b, h, lk, lq)
    total = weights.sum(axis=-2, keepdims=True)
    return (weights.swapaxes(-1, -2) @ v) / total.swapaxes(-1, -2)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm``, except for large inputs on the CPU, where MLX's layer norm runs as ten
    separate passes with slow row reductions: the row means are matrix-vector products and the rest
    five elementwise passes (8,400 tokens of 256: 5.1 ms against 6.6, ``benchmarks.detector_ops``).
    The same normalisation, within float32 rounding (the means are summed in another order)."""

    def __call__(self, x: mx.array) -> mx.array:
        if "weight" not in self or "bias" not in self or not _cpu_fast_path(x.size, x.dtype):
            return super().__call__(x)
        mean = mx.full((x.shape[-1], 1), 1 / x.shape[-1], dtype=x.dtype)
        centred = x - x @ mean
        return centred * mx.rsqrt(mx.square(centred) @ mean + self.eps) * self.weight + self.bias


class Dropout(nn.Module):
    """Dropout as PyTorch's: in training, zero each element with probability ``p`` and scale the
    rest by 1 / (1 - p); the identity in eval mode or at ``p == 0``. ``p`` may be set later
    (``--dropout``). Its randomness is MLX's global random state."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    @property
    def active(self) -> bool:
        return self.training and self.p > 0

    def __call__(self, x: mx.array) -> mx.array:
        if not self.active:
            return x
        keep = mx.random.bernoulli(1.0 - self.p, x.shape)
        return mx.where(keep, x * (1.0 / (1.0 - self.p)), mx.array(0, x.dtype))


ACTIVATIONS = {
    "gelu": gelu,
    "gelu_new": nn.gelu_approx,
    "gelu_pytorch_tanh": nn.gelu_approx,
    "relu": nn.relu,
}


def split_heads(x: mx.array, num_heads: int) -> mx.array:
    """(B, L, H) -> (B, heads, L, H / heads)."""
    b, length, hidden = x.shape
    return x.reshape(b, length, num_heads, hidden // num_heads).transpose(0, 2, 1, 3)


def merge_heads(x: mx.array) -> mx.array:
    """(B, heads, L, d) -> (B, L, heads * d)."""
    b, heads, length, d = x.shape
    return x.transpose(0, 2, 1, 3).reshape(b, length, heads * d)


class Dense(nn.Module):
    """A holder for one ``dense`` layer, so that parameter names match Hugging Face's."""

    def __init__(self, in_dims: int, out_dims: int):
        super().__init__()
        self.dense = nn.Linear(in_dims, out_dims)
