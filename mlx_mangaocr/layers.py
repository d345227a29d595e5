"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

# erf(x) ~ x * P(x^2) / Q(x^2) on [-4, 4] (saturated outside): the float32 rational approximation
# of Eigen and XLA, accurate to a few ulps. Only multiplies, adds and one divide.
_ERF_P = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
          -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02)  # fmt: skip
_ERF_Q = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
          -1.42647390514189e-02)  # fmt: skip


def _gelu_rational(x: mx.array) -> mx.array:
    z = mx.clip(x * 0.7071067811865476, -4.0, 4.0)
    z2 = z * z
    p = _ERF_P[0]
    for c in _ERF_P[1:]:
        p = p * z2 + c
    q = _ERF_Q[0]
    for c in _ERF_Q[1:]:
        q = q * z2 + c
    return 0.5 * x * (1.0 + z * p / q)


_gelu_rational_compiled = mx.compile(_gelu_rational)
_compiled_ok = True


def gelu(x: mx.array) -> mx.array:
    """Exact (erf) GELU, as Hugging Face's "gelu".

    MLX's CPU backend computes erf element by element several times slower than the rest of a
    layer; on the CPU, for large inputs (the encoder), the rational erf above, fused by
    ``mx.compile``, gives the same values to float32 rounding. Metal and CUDA keep ``nn.gelu``.
    """
    global _compiled_ok
    if x.size < 65536 or mx.default_device().type != mx.DeviceType.cpu:
        return nn.gelu(x)  # small inputs (a decode step): a compiled call costs more than it saves
    if _compiled_ok:
        try:
            return _gelu_rational_compiled(x)
        except (RuntimeError, ValueError):  # mx.compile on the CPU needs a C++ compiler at run time
            _compiled_ok = False
    return _gelu_rational(x)


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
