"""ResNet-vd backbone (transformers' RT-DETR ResNet), NHWC, every BatchNorm folded into its conv."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..layers import gelu, silu
from .config import BackboneConfig

ACTIVATIONS = {"relu": nn.relu, "silu": silu, "gelu": gelu, None: lambda x: x}


BAND_BYTES = 32 * 2**20  # the largest im2col matrix one eager convolution builds


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` in bounded memory. MLX's CPU convolution copies its input twice before its GEMM:
    padded, then as an im2col matrix of (outputs x kernel taps) rows, 118 MB for a 3x3 stem conv of
    one 640x640 page and 4x that for four. So:

    - a 1x1, stride-1 conv is the matmul it is (the same GEMM on the same operands, bit for bit);
    - when ``eager`` and the im2col matrix would exceed ``BAND_BYTES``, the output is computed in
      bands of rows, each evaluated before the next. Every output is the same sum over the same input
      values; the GEMM may round it differently (its blocking depends on the row count), within
      fp32's rounding of one dot product, as a PyTorch convolution differs from MLX's."""

    eager = True

    def __call__(self, x: mx.array) -> mx.array:
        return self.forward(x, self.weight, self.bias if "bias" in self else None)

    def forward(self, x: mx.array, w: mx.array, bias: mx.array | None) -> mx.array:
        """This convolution (stride, padding) with the kernel ``w`` (OHWI) and ``bias``."""
        if w.shape[1:3] == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0) and self.groups == 1:
            y = (x.reshape(-1, x.shape[-1]) @ w.reshape(w.shape[0], -1).T).reshape(*x.shape[:-1], w.shape[0])
        else:
            y = self._banded(x, w) if self.eager and self.dilation in (1, (1, 1)) and self.groups == 1 else None
            if y is None:
                y = mx.conv2d(x, w, self.stride, self.padding, self.dilation, self.groups)
        return y if bias is None else y + bias

    def _banded(self, x: mx.array, w: mx.array) -> mx.array | None:
        b, h, width, c = x.shape
        (kh, kw), (sh, sw), (ph, pw) = w.shape[1:3], self.stride, self.padding
        out_h, out_w = (h + 2 * ph - kh) // sh + 1, (width + 2 * pw - kw) // sw + 1
        rows = max(1, BAND_BYTES // (b * out_w * kh * kw * c * x.dtype.size))
        if rows >= out_h:
            return None
        bands = []
        for r0 in range(0, out_h, rows):
            r1 = min(out_h, r0 + rows)
            top, bottom = r0 * sh - ph, (r1 - 1) * sh - ph + kh  # the input rows [top, bottom) it reads
            band = x[:, max(top, 0) : min(bottom, h)]
            padding = ([max(-top, 0), pw], [max(bottom - h, 0), pw])
            bands.append(mx.conv_general(band, w, stride=self.stride, padding=padding))
            mx.eval(bands[-1])
        return mx.concatenate(bands, axis=1)


def evaluated(x: mx.array, eager: bool) -> mx.array:
    """``x``, evaluated now when ``eager``. MLX's evaluation runs up to ten operations ahead of the
    first unfinished one, and each convolution ahead holds its padded input and im2col matrix (118 MB
    for a 3x3 stem conv of a 640x640 page): evaluating block by block keeps one block's in flight.
    Off for function transforms (``mx.compile``), which cannot evaluate inside."""
    if eager:
        mx.eval(x)
    return x


class ConvNorm(nn.Module):
    """A conv with its BatchNorm folded in (weight OHWI, bias), then an activation. Padding is
    ``(k - 1) // 2`` as in transformers' conv-norm layers."""

    def __init__(self, in_dims: int, out_dims: int, kernel: int, stride: int = 1, activation: str | None = None):
        super().__init__()
        self.conv = Conv2d(in_dims, out_dims, kernel, stride=stride, padding=(kernel - 1) // 2, bias=True)
        self.activation = activation

    def __call__(self, x: mx.array) -> mx.array:
        return ACTIVATIONS[self.activation](self.conv(x))


def avg_pool_2x2_ceil(x: mx.array) -> mx.array:
    """``AvgPool2d(2, 2, ceil_mode=True)``: an odd last row/column is averaged over what it has."""
    b, h, w, c = x.shape
    if h % 2 or w % 2:
        x = mx.pad(x, [(0, 0), (0, h % 2), (0, w % 2), (0, 0)])
        ones = mx.pad(mx.ones((1, h, w, 1), x.dtype), [(0, 0), (0, h % 2), (0, w % 2), (0, 0)])
        count = ones.reshape(1, (h + 1) // 2, 2, (w + 1) // 2, 2, 1).sum(axis=(2, 4))
    else:
        count = 4
    hh, ww = x.shape[1] // 2, x.shape[2] // 2
    return x.reshape(b, hh, 2, ww, 2, c).sum(axis=(2, 4)) / count


max_pool_3x3_s2 = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)  # the stem's pool (padding never wins a max)


class Shortcut(nn.Module):
    """The residual path: identity, a 1x1 conv, or (the "vd" variant) 2x2 average pool then 1x1 conv."""

    def __init__(self, in_dims: int, out_dims: int, stride: int, pool: bool, project: bool):
        super().__init__()
        self.pool = pool
        if project:
            self.conv = Conv2d(in_dims, out_dims, 1, stride=1 if pool else stride, bias=True)

    def __call__(self, x: mx.array) -> mx.array:
        if self.pool:
            x = avg_pool_2x2_ceil(x)
        return self.conv(x) if "conv" in self else x


class ResidualBlock(nn.Module):
    """A bottleneck (1x1, 3x3, 1x1; reduction 4) or basic (3x3, 3x3) residual block."""

    def __init__(self, config: BackboneConfig, in_dims: int, out_dims: int, stride: int, first: bool):
        super().__init__()
        act = config.hidden_act
        if config.layer_type == "bottleneck":
            mid = out_dims // 4
            s1, s2 = (stride, 1) if config.downsample_in_bottleneck else (1, stride)
            self.layer = [
                ConvNorm(in_dims, mid, 1, s1, act),
                ConvNorm(mid, mid, 3, s2, act),
                ConvNorm(mid, out_dims, 1, 1, None),
            ]
            project = in_dims != out_dims or stride != 1
            self.shortcut = Shortcut(in_dims, out_dims, stride, pool=stride == 2, project=project)
        else:  # basic: the first block of a stage always has a shortcut conv
            self.layer = [ConvNorm(in_dims, out_dims, 3, stride, act), ConvNorm(out_dims, out_dims, 3, 1, None)]
            pool = in_dims != out_dims and first
            self.shortcut = Shortcut(in_dims, out_dims, stride, pool=pool, project=first)
        self.activation = act

    def __call__(self, x: mx.array) -> mx.array:
        y = x
        for conv in self.layer:
            y = conv(y)
        return ACTIVATIONS[self.activation](y + self.shortcut(x))


class Backbone(nn.Module):
    """Stem (three 3x3 convs, max pool), then the stages; returns the maps of ``out_indices``.
    ``eager``: evaluate each stem conv and block as it is built (see ``evaluated``)."""

    def __init__(self, config: BackboneConfig):
        super().__init__()
        self.config = config
        self.eager = True
        e, act = config.embedding_size, config.hidden_act
        self.embedder = [
            ConvNorm(config.num_channels, e // 2, 3, 2, act),
            ConvNorm(e // 2, e // 2, 3, 1, act),
            ConvNorm(e // 2, e, 3, 1, act),
        ]
        self.stages = []
        in_dims = e
        for i, (out_dims, depth) in enumerate(zip(config.hidden_sizes, config.depths, strict=True)):
            stride = (2 if config.downsample_in_first_stage else 1) if i == 0 else 2
            blocks = [ResidualBlock(config, in_dims, out_dims, stride, first=True)]
            blocks += [ResidualBlock(config, out_dims, out_dims, 1, first=False) for _ in range(depth - 1)]
            self.stages.append(blocks)
            in_dims = out_dims

    def __call__(self, pixels: mx.array) -> list[mx.array]:
        x = pixels
        for conv in self.embedder:
            x = evaluated(conv(x), self.eager)
        states = [max_pool_3x3_s2(x)]
        for blocks in self.stages:
            x = states[-1]
            for block in blocks:
                x = evaluated(block(x), self.eager)
            states.append(x)
        return [states[i] for i in self.config.out_indices]
