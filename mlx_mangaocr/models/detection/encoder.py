"""RT-DETR's hybrid encoder: AIFI (a transformer layer on the coarsest map) and CCFM (top-down
then bottom-up fusion with CSP-RepVGG blocks). NHWC maps."""

from __future__ import annotations

import functools

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..layers import LayerNorm, attention, merge_heads, split_heads
from .backbone import ACTIVATIONS, ConvNorm, evaluated
from .config import DetectorConfig


class SelfAttention(nn.Module):
    """Multi-head attention whose queries and keys get a position embedding, values do not."""

    def __init__(self, dims: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dims // heads) ** -0.5
        self.q_proj = nn.Linear(dims, dims)
        self.k_proj = nn.Linear(dims, dims)
        self.v_proj = nn.Linear(dims, dims)
        self.out_proj = nn.Linear(dims, dims)

    def __call__(self, x: mx.array, pos: mx.array | None) -> mx.array:
        qk = x if pos is None else x + pos
        q, k, v = (split_heads(p(t), self.heads) for p, t in ((self.q_proj, qk), (self.k_proj, qk), (self.v_proj, x)))
        return self.out_proj(merge_heads(attention(q, k, v, self.scale)))


class EncoderLayer(nn.Module):
    """Self-attention and FFN, each with a residual and a LayerNorm (after, or before if
    ``normalize_before``)."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        d = config.encoder_hidden_dim
        self.self_attn = SelfAttention(d, config.encoder_attention_heads)
        self.self_attn_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.fc1 = nn.Linear(d, config.encoder_ffn_dim)
        self.fc2 = nn.Linear(config.encoder_ffn_dim, d)
        self.final_layer_norm = LayerNorm(d, eps=config.layer_norm_eps)
        self.activation = config.encoder_activation_function
        self.pre_norm = config.normalize_before

    def __call__(self, x: mx.array, pos: mx.array | None) -> mx.array:
        h = self.self_attn_layer_norm(x) if self.pre_norm else x
        x = x + self.self_attn(h, pos)
        if not self.pre_norm:
            x = self.self_attn_layer_norm(x)
        if self.pre_norm:  # transformers' pre-norm FFN keeps the normalised state as its residual
            x = self.final_layer_norm(x)
        x = x + self.fc2(ACTIVATIONS[self.activation](self.fc1(x)))
        return x if self.pre_norm else self.final_layer_norm(x)


class AIFI(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.layers = [EncoderLayer(config) for _ in range(config.encoder_layers)]
        self.use_position = config.eval_size is None  # transformers skips it when eval_size is set
        self.temperature = config.positional_encoding_temperature

    def __call__(self, x: mx.array) -> mx.array:
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        pos = sincos_position_embedding(h, w, c, self.temperature).astype(x.dtype) if self.use_position else None
        for layer in self.layers:
            x = layer(x, pos)
        return x.reshape(b, h, w, c)


@functools.lru_cache(maxsize=16)
def sincos_position_embedding(height: int, width: int, dims: int, temperature: float) -> mx.array:
    """(1, H*W, dims): ``[sin(h w_k) | cos(h w_k) | sin(w w_k) | cos(w w_k)]`` with
    ``w_k = temperature^(-k / (dims/4))``, row-major positions; computed in float64 as transformers does,
    once per map size (1.2 ms for the 20x20 map on this CPU, ``benchmarks.detector_ops``)."""
    quarter = dims // 4
    omega = 1.0 / temperature ** (np.arange(quarter, dtype=np.float64) / quarter)
    grid_h, grid_w = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    emb_h, emb_w = np.outer(grid_h.ravel(), omega), np.outer(grid_w.ravel(), omega)
    table = np.concatenate([np.sin(emb_h), np.cos(emb_h), np.sin(emb_w), np.cos(emb_w)], axis=1)
    return mx.array(table.astype(np.float32))[None]


class RepVggBlock(nn.Module):
    def __init__(self, config: DetectorConfig, dims: int):
        super().__init__()
        self.conv1 = ConvNorm(dims, dims, 3)
        self.conv2 = ConvNorm(dims, dims, 1)
        self.activation = config.activation_function

    def __call__(self, x: mx.array) -> mx.array:
        # RT-DETR's deploy form: the 1x1 branch is the 3x3 kernel's centre tap, so one convolution
        # computes both (the same sum of products, grouped differently: within fp32 rounding)
        three, one = self.conv1.conv, self.conv2.conv
        pad = (three.weight.shape[1] - 1) // 2
        kernel = three.weight + mx.pad(one.weight, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
        return ACTIVATIONS[self.activation](three.forward(x, kernel, three.bias + one.bias))


class CSPRepLayer(nn.Module):
    """Two 1x1 branches of the concatenated input, one through three RepVGG blocks, summed."""

    def __init__(self, config: DetectorConfig):
        super().__init__()
        d, act = config.encoder_hidden_dim, config.activation_function
        hidden = int(d * config.hidden_expansion)
        self.conv1 = ConvNorm(2 * d, hidden, 1, activation=act)
        self.conv2 = ConvNorm(2 * d, hidden, 1, activation=act)
        self.bottlenecks = [RepVggBlock(config, hidden) for _ in range(3)]
        if hidden != d:
            self.conv3 = ConvNorm(hidden, d, 1, activation=act)
        self.eager = True  # evaluate each RepVGG block as it is built (see ``backbone.evaluated``)

    def __call__(self, x: mx.array) -> mx.array:
        y = self.conv1(x)
        for block in self.bottlenecks:
            y = evaluated(block(y), self.eager)
        y = y + self.conv2(x)
        return self.conv3(y) if "conv3" in self else y


def upsample_nearest_2x(x: mx.array) -> mx.array:
    b, h, w, c = x.shape
    return mx.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)


class HybridEncoder(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        d, act, levels = config.encoder_hidden_dim, config.activation_function, len(config.encoder_in_channels)
        self.encode_proj_layers = list(config.encode_proj_layers)
        self.encoder = [AIFI(config) for _ in self.encode_proj_layers] if config.encoder_layers > 0 else []
        self.lateral_convs = [ConvNorm(d, d, 1, activation=act) for _ in range(levels - 1)]
        self.fpn_blocks = [CSPRepLayer(config) for _ in range(levels - 1)]
        self.downsample_convs = [ConvNorm(d, d, 3, 2, activation=act) for _ in range(levels - 1)]
        self.pan_blocks = [CSPRepLayer(config) for _ in range(levels - 1)]
        self.eager = True  # evaluate each fusion block as it is built (see ``backbone.evaluated``)

    def __call__(self, maps: list[mx.array]) -> list[mx.array]:
        return self.fuse(self.attend(maps))

    def attend(self, maps: list[mx.array]) -> list[mx.array]:
        """AIFI, the transformer layer, on the maps of ``encode_proj_layers``; the others as they are."""
        maps = list(maps)
        for aifi, level in zip(self.encoder, self.encode_proj_layers, strict=False):
            maps[level] = aifi(maps[level])
        return maps

    def fuse(self, maps: list[mx.array]) -> list[mx.array]:
        """CCFM: the maps fused top-down, then bottom-up, by convolutions."""
        # top-down
        fpn = [maps[-1]]
        for i, (lateral, block) in enumerate(zip(self.lateral_convs, self.fpn_blocks, strict=True)):
            top = lateral(fpn[-1])
            fpn[-1] = top
            fused = block(mx.concatenate([upsample_nearest_2x(top), maps[len(maps) - 2 - i]], axis=-1))
            fpn.append(evaluated(fused, self.eager))
        fpn.reverse()
        # bottom-up
        pan = [fpn[0]]
        for i, (down, block) in enumerate(zip(self.downsample_convs, self.pan_blocks, strict=True)):
            pan.append(evaluated(block(mx.concatenate([down(pan[-1]), fpn[i + 1]], axis=-1)), self.eager))
        return pan
