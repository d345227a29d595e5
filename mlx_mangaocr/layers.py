"""Small building blocks shared by the encoder and the decoder."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

ACTIVATIONS = {
    "gelu": nn.gelu,  # exact erf GELU, as Hugging Face's "gelu"
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
