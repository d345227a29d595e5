"""Decoder caches: preallocated self-attention keys/values (one position for the batch, or one per
row), and cross-attention keys/values.

The self-attention cache is allocated once for the whole decode (``capacity`` positions) and
written in place, as mlx-lm's ``KVCache``: appending by concatenation would copy the whole cache
every step. Cross-attention keys/values depend only on the image and are computed once.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np


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


class WholeSequence:
    """No cache: a whole target sequence at once (training), each position seeing itself and the
    positions before it, as transformers' causal mask."""

    def positions(self, length: int) -> mx.array:
        return mx.arange(length)

    def mask(self, length: int, dtype: mx.Dtype) -> mx.array | None:
        if length == 1:
            return None
        rows = mx.arange(length)[:, None]
        return mx.where(mx.arange(length)[None, :] <= rows, 0.0, -mx.inf).astype(dtype)

    def update_and_fetch(self, keys: mx.array, values: mx.array) -> tuple[mx.array, mx.array]:
        return keys, values


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


class RowKVCache:
    """Every decoder layer's self-attention keys and values for rows that each stand at their own
    position (``position``, on the host), for a step through ``FixedKVCache``: continuous batching
    starts an image in a row while the others go on.

    The capacity follows the longest row: 16 positions, doubled when a row needs more (up to
    ``limit``) and halved when the rows that needed it are gone, so short outputs do not pay for
    attending over, copying and reordering ``limit`` positions. Masked positions add exact zeros,
    so the capacity does not change any result."""

    MIN_CAPACITY = 16

    def __init__(self, layers: list[KVCache], limit: int):
        self.limit = limit
        rows = layers[0].keys.shape[0]
        self.keys = [c.keys[:, :, :0] for c in layers]
        self.values = [c.values[:, :, :0] for c in layers]
        self.position = np.zeros(rows, dtype=np.int32)
        self.fit()

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def fit(self) -> None:
        """Grow or shrink to the smallest size (16, 32, 64, ... or the limit) that holds every row's
        next position."""
        need = int(self.position.max()) + 1 if len(self.position) else 1
        if need > self.limit:
            raise ValueError(f"decode ran past the cache capacity of {self.limit} positions")
        size = self.MIN_CAPACITY
        while size < need:
            size *= 2
        size = min(size, self.limit)
        if size > self.capacity:
            pad = [(0, 0), (0, 0), (0, size - self.capacity), (0, 0)]
            self.keys = [mx.pad(k, pad) for k in self.keys]
            self.values = [mx.pad(v, pad) for v in self.values]
        elif size < self.capacity // 2:
            self.keys = [k[:, :, :size] for k in self.keys]
            self.values = [v[:, :, :size] for v in self.values]

    def start(self, rows: np.ndarray) -> None:
        """New images in ``rows``: their positions restart at 0."""
        self.position[rows] = 0

    def advance(self) -> None:
        self.position += 1

    def take(self, rows: np.ndarray) -> None:
        """Keep ``rows``, in that order (a smaller batch, or beam search's surviving hypotheses)."""
        where = mx.array(rows)
        self.keys = [k[where] for k in self.keys]
        self.values = [v[where] for v in self.values]
        self.position = self.position[rows]


class CrossKV:
    """Cross-attention keys and values of one decoder layer, computed once per image."""

    def __init__(self, keys: mx.array, values: mx.array):
        self.keys = keys
        self.values = values

    def repeat(self, times: int) -> CrossKV:
        """Repeat every image's rows ``times`` times (one copy per beam)."""
        return CrossKV(mx.repeat(self.keys, times, axis=0), mx.repeat(self.values, times, axis=0))
