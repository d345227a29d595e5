"""RT-DETR-v2's decoder: self-attention over the queries, multi-scale deformable attention into
the encoder's maps, FFN; each layer refines the boxes and scores the classes."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..layers import LayerNorm, softmax, split_over_cpu_streams
from .backbone import ACTIVATIONS
from .config import DetectorConfig
from .encoder import SelfAttention


class MLP(nn.Module):
    """Linear layers with ReLU between them (``RTDetrV2MLPPredictionHead``)."""

    def __init__(self, in_dims: int, hidden: int, out_dims: int, num_layers: int):
        super().__init__()
        sizes = [in_dims] + [hidden] * (num_layers - 1) + [out_dims]
        self.layers = [nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]

    def __call__(self, x: mx.array) -> mx.array:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = nn.relu(x)
        return x


def sampling_taps(loc: mx.array, shapes: list[tuple[int, int]], discrete: bool) -> tuple[mx.array, mx.array]:
    """Where the sampling points read the concatenated maps, and with what weights.

    loc: (N, Q, L, P, 2) points as (x, y) in [0, 1] of each level's map. Returns the rows of the
    (N, sum(H*W), C) maps each point reads, (N, Q, L, P, T), and their weights, the same shape:
    ``T = 4`` corners for ``grid_sample(value, 2 * loc - 1, mode="bilinear", padding_mode="zeros",
    align_corners=False)`` (torch's unnormalisation steps, ``((g + 1) * W - 1) / 2``; a corner outside
    the map weighs 0), or ``T = 1``, the nearest cell rounded and clamped, for ``decoder_method="discrete"``."""
    starts = [0]
    for h, w in shapes[:-1]:
        starts.append(starts[-1] + h * w)
    # sizes in the points' dtype (small whole numbers: exact in float16 too), (L, 1): broadcast over (N, Q, L, P)
    width = mx.array([float(w) for _, w in shapes], dtype=loc.dtype)[:, None]
    height = mx.array([float(h) for h, _ in shapes], dtype=loc.dtype)[:, None]
    lines = mx.array([h for h, _ in shapes], dtype=mx.int32)[:, None]
    columns = mx.array([w for _, w in shapes], dtype=mx.int32)[:, None]
    start = mx.array(starts, dtype=mx.int32)[:, None]
    if discrete:
        cx = mx.clip((loc[..., 0] * width + 0.5).astype(mx.int32), 0, columns - 1)
        cy = mx.clip((loc[..., 1] * height + 0.5).astype(mx.int32), 0, lines - 1)
        return (start + cy * columns + cx)[..., None], mx.ones(cx.shape + (1,), loc.dtype)
    grid = 2 * loc - 1
    x = ((grid[..., 0] + 1) * width - 1) / 2
    y = ((grid[..., 1] + 1) * height - 1) / 2
    x0, y0 = mx.floor(x), mx.floor(y)
    x1, y1 = x0 + 1, y0 + 1
    rows, weights = [], []
    for cx, cy, weight in (
        (x0, y0, (x1 - x) * (y1 - y)),
        (x1, y0, (x - x0) * (y1 - y)),
        (x0, y1, (x1 - x) * (y - y0)),
        (x1, y1, (x - x0) * (y - y0)),
    ):
        inside = (cx >= 0) & (cx <= width - 1) & (cy >= 0) & (cy <= height - 1)
        # the cell in integers (a float16 product would round past 2048 cells)
        cell = mx.clip(cy, 0, height - 1).astype(mx.int32) * columns + mx.clip(cx, 0, width - 1).astype(mx.int32)
        rows.append(start + cell)
        weights.append(mx.where(inside, weight, 0))
    return mx.stack(rows, axis=-1), mx.stack(weights, axis=-1)


def sample_values(table, loc, weights, first, shapes, discrete: bool, heads: int) -> mx.array:
    """Each (image, head) pair's sampled values, summed: ``table`` the value projection's rows
    (B * S * heads, head_dim) as it lies in memory, ``loc`` (pairs, Q, L, P, 2), ``weights`` (pairs,
    Q, L, P, 1) the attention weights, ``first`` (pairs,) each pair's first row. Returns (pairs, Q,
    1, head_dim). Every level, point and corner is read in one gather and summed with (attention x
    bilinear) weights by a batched matmul: a few large operations where a loop over levels and
    corners made dozens. MLX copies whole rows of a contiguous table (of a transposed one, element
    by element: 2.7x slower; ``take_along_axis``, 5x)."""
    rows, taps = sampling_taps(loc, shapes, discrete)  # (pairs, Q, L, P, T)
    n, q, k = rows.shape[0], rows.shape[1], rows.shape[2] * rows.shape[3] * rows.shape[4]
    rows = rows.reshape(n, q * k) * heads + first[:, None]
    sampled = mx.take(table, rows.reshape(-1), axis=0).reshape(n, q, k, table.shape[-1])
    return (weights * taps).reshape(n, q, 1, k) @ sampled


# one fused graph: its ~40 small elementwise operations on the taps (for 300 queries, 115k points) in a
# few kernels (on this CPU the taps take 1.1 ms instead of 2.4, ``benchmarks.detector_ops``); the same
# operations, the same values
_sample_compiled = mx.compile(sample_values)


class DeformableAttention(nn.Module):
    """Each query samples ``n_points`` points per level around its reference box, per head, and
    sums them with softmax weights over levels x points."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        d, heads = config.d_model, config.decoder_attention_heads
        self.heads, self.levels, self.points = heads, config.decoder_n_levels, config.decoder_n_points
        self.offset_scale = config.decoder_offset_scale
        self.discrete = config.decoder_method == "discrete"
        self.sampling_offsets = nn.Linear(d, heads * self.levels * self.points * 2)
        self.attention_weights = nn.Linear(d, heads * self.levels * self.points)
        self.value_proj = nn.Linear(d, d)
        self.output_proj = nn.Linear(d, d)

    def __call__(self, query: mx.array, memory: mx.array, shapes: list[tuple[int, int]], ref: mx.array) -> mx.array:
        b, q, d = query.shape
        heads, lp = self.heads, self.levels * self.points
        head_dim = d // heads
        value = self.value_proj(memory)  # (B, S, d): row (n * S + s) * heads + h of the table below
        offsets = self.sampling_offsets(query).reshape(b, q, heads, lp, 2)
        weights = softmax(self.attention_weights(query).reshape(b, q, heads, lp))
        scale = mx.array([1 / self.points] * lp, dtype=query.dtype)[:, None]  # n_points_scale
        loc = ref[:, :, None, None, :2] + offsets * scale * ref[:, :, None, None, 2:] * self.offset_scale
        loc = loc.transpose(0, 2, 1, 3, 4).reshape(b * heads, q, self.levels, self.points, 2)
        weights = weights.transpose(0, 2, 1, 3).reshape(b * heads, q, self.levels, self.points, 1)
        pairs = mx.arange(b * heads, dtype=mx.int32)  # (image, head) pairs, image-major
        # rows of the projection itself, (B * S * heads, head_dim) as it lies in memory
        first = (pairs // heads) * value.shape[1] * heads + pairs % heads
        table = value.reshape(-1, head_dim)

        # on the CPU the pairs are shared out over the cores (MLX runs a CPU stream's elementwise work on one)
        out = split_over_cpu_streams(
            lambda *parts: _sample_compiled(table, *parts, tuple(shapes), self.discrete, heads), loc, weights, first
        )
        out = out.reshape(b, heads, q, head_dim).transpose(0, 2, 1, 3)
        return self.output_proj(out.reshape(b, q, d))


class DecoderLayer(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        d = config.d_model
        self.self_attn = SelfAttention(d, config.decoder_attention_heads)
        self.self_attn_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.encoder_attn = DeformableAttention(config)
        self.encoder_attn_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(d, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d)
        self.final_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.activation = config.decoder_activation_function

    def __call__(self, h, pos, memory, shapes, ref):
        h = self.self_attn_layer_norm(h + self.self_attn(h, pos))
        h = self.encoder_attn_layer_norm(h + self.encoder_attn(h + pos, memory, shapes, ref))
        return self.final_layer_norm(h + self.fc2(ACTIVATIONS[self.activation](self.fc1(h))))


def inverse_sigmoid(x: mx.array, eps: float = 1e-5) -> mx.array:
    x = mx.clip(x, 0, 1)
    return mx.log(mx.maximum(x, eps) / mx.maximum(1 - x, eps))


class Decoder(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        d = config.d_model
        self.layers = [DecoderLayer(config) for _ in range(config.decoder_layers)]
        self.query_pos_head = MLP(4, 2 * d, d, num_layers=2)
        self.class_embed = [nn.Linear(d, config.num_labels) for _ in range(config.decoder_layers)]
        self.bbox_embed = [MLP(d, d, 4, num_layers=3) for _ in range(config.decoder_layers)]

    def __call__(self, target, memory, shapes, ref_logits) -> tuple[mx.array, mx.array]:
        """Returns the last layer's class logits (B, Q, labels) and boxes (B, Q, 4: cx, cy, w, h)."""
        h, ref = target, mx.sigmoid(ref_logits)
        logits = None
        for layer, class_embed, bbox_embed in zip(self.layers, self.class_embed, self.bbox_embed, strict=True):
            h = layer(h, self.query_pos_head(ref), memory, shapes, ref)
            ref = mx.sigmoid(bbox_embed(h) + inverse_sigmoid(ref))
            logits = class_embed(h)
        return logits, ref
