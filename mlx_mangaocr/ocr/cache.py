"""Decoder caches: preallocated self-attention keys/values, and cross-attention keys/values.

The self-attention cache is allocated once for the whole decode (``capacity`` positions) and
written in place, as mlx-lm's ``KVCache``: appending by concatenation would copy the whole cache
every step. Cross-attention keys/values depend only on the image and are computed once.
"""

from __future__ import annotations

import mlx.core as mx


class KVCache:
    """Keys and values of one self-attention layer, shape (B, heads, capacity, head_dim)."""

    def __init__(self, batch: int, num_heads: int, head_dim: int, capacity: int, dtype: mx.Dtype):
        self.keys = mx.zeros((batch, num_heads, capacity, head_dim), dtype=dtype)
        self.values = mx.zeros((batch, num_heads, capacity, head_dim), dtype=dtype)
        self.offset = 0

    @property
    def capacity(self) -> int:
        return self.keys.shape[2]

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        """Write the new positions in place and return the keys/values of every position so far."""
        start, end = self.offset, self.offset + keys.shape[2]
        if end > self.capacity:
            raise ValueError(f"decode ran past the cache capacity of {self.capacity} positions")
        self.keys[:, :, start:end, :] = keys
        self.values[:, :, start:end, :] = values
        self.offset = end
        return self.keys[:, :, :end, :], self.values[:, :, :end, :]

    def positions(self, length: int) -> mx.array:
        """Positions of ``length`` new tokens."""
        return mx.arange(self.offset, self.offset + length)

    def mask(self, length: int, dtype: mx.Dtype) -> mx.array | None:
        """Additive mask letting new query i (at position offset + i) see keys 0 .. offset + i."""
        if length == 1:
            return None  # a single new token may see the whole cache so far
        rows = mx.arange(length)[:, None] + self.offset
        cols = mx.arange(self.offset + length)[None, :]
        return mx.where(cols <= rows, 0.0, -mx.inf).astype(dtype)

    def reorder(self, indices: mx.array) -> None:
        """Keep the rows named by ``indices`` (beam search picks which hypotheses go on)."""
        self.keys = self.keys[indices]
        self.values = self.values[indices]


class FixedKVCache:
    """The same cache seen with fixed shapes, for a step compiled with ``mx.compile``.

    ``position`` is an array with one position per row, not a Python int, and attention always
    spans the whole capacity (each row's positions not yet written are masked out), so every step
    has the same shapes and the compiled graph is traced once per batch shape. Rows may stand at
    different positions: continuous batching starts a new image in a row while the others go on.
    Takes one new token per row.
    """

    def __init__(self, keys: mx.array, values: mx.array, position: mx.array):
        self.keys, self.values, self.position = keys, values, position

    def positions(self, length: int) -> mx.array:
        if length != 1:
            raise ValueError("a fixed-shape cache takes one token per step")
        return self.position[:, None]

    def mask(self, length: int, dtype: mx.Dtype) -> mx.array:
        visible = mx.arange(self.keys.shape[2])[None, :] <= self.position[:, None]
        return mx.where(visible, 0.0, -mx.inf).astype(dtype)[:, None, None, :]

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        where = mx.broadcast_to(self.position[:, None, None, None], keys.shape)
        self.keys = mx.put_along_axis(self.keys, where, keys, axis=2)
        self.values = mx.put_along_axis(self.values, where, values, axis=2)
        return self.keys, self.values


class CrossKV:
    """Cross-attention keys and values of one decoder layer, computed once per image."""

    def __init__(self, keys: mx.array, values: mx.array):
        self.keys = keys
        self.values = values

    def repeat(self, times: int) -> CrossKV:
        """Repeat every image's rows ``times`` times (one copy per beam)."""
        return CrossKV(mx.repeat(self.keys, times, axis=0), mx.repeat(self.values, times, axis=0))
