"""RT-DETR-v2 (``RTDetrV2ForObjectDetection``) in MLX: backbone, hybrid encoder, query selection
over anchors, deformable decoder. Pixels in, last-layer logits and boxes out; no I/O here."""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..layers import LayerNorm
from .backbone import Backbone, Conv2d
from .config import DetectorConfig
from .decoder import MLP, Decoder
from .encoder import HybridEncoder


@dataclass
class DetectorOutput:
    """What the model gives, with the intermediate results the parity tests compare."""

    logits: mx.array  # (B, Q, labels)
    boxes: mx.array  # (B, Q, 4) cx, cy, w, h in [0, 1]
    backbone_maps: list[mx.array]
    encoder_maps: list[mx.array]
    enc_logits: mx.array  # (B, S, labels): every encoder token's class logits, which choose the queries
    topk_index: mx.array  # (B, Q): the encoder tokens chosen as queries
    shapes: list[tuple[int, int]]


@dataclass
class Selection:
    """Query selection's output, the decoder's input."""

    target: mx.array  # (B, Q, d): the chosen tokens
    memory: mx.array  # (B, S, d): every level's tokens
    ref_logits: mx.array  # (B, Q, 4): their reference boxes, before the sigmoid
    shapes: list[tuple[int, int]]
    enc_logits: mx.array
    topk: mx.array


def make_anchors(shapes: list[tuple[int, int]], grid_size: float = 0.05, eps: float = 1e-2):
    """Anchor logits (1, S, 4) and the valid mask (1, S, 1) for maps of ``shapes``, as transformers
    builds them in float32: centers ((x + 0.5) / W, (y + 0.5) / H), size ``grid_size * 2^level``,
    ``log(a / (1 - a))``; anchors not inside (eps, 1 - eps) get float32's largest value."""
    anchors = []
    for level, (h, w) in enumerate(shapes):
        gy, gx = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
        xy = np.stack([gx, gy], -1) + np.float32(0.5)
        xy[..., 0] /= np.float32(w)
        xy[..., 1] /= np.float32(h)
        wh = np.ones_like(xy) * np.float32(grid_size) * np.float32(2.0**level)
        anchors.append(np.concatenate([xy, wh], -1).reshape(-1, 4))
    a = np.concatenate(anchors)[None]
    valid = ((a > eps) & (a < 1 - eps)).all(-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        logits = np.log(a / (1 - a)).astype(np.float32)
    logits = np.where(valid, logits, np.finfo(np.float32).max).astype(np.float32)
    return mx.array(logits), mx.array(valid.astype(np.float32))


class DetectorModel(nn.Module):
    def __init__(self, config: DetectorConfig):
        super().__init__()
        self.config = config
        d = config.d_model
        self.backbone = Backbone(config.backbone)
        self.encoder_input_proj = [Conv2d(c, config.encoder_hidden_dim, 1) for c in config.encoder_in_channels]
        self.encoder = HybridEncoder(config)
        self.enc_output = [nn.Linear(d, d), LayerNorm(d, eps=config.layer_norm_eps)]
        self.enc_score_head = nn.Linear(d, config.num_labels)
        self.enc_bbox_head = MLP(d, d, 4, num_layers=3)
        self.decoder_input_proj = [Conv2d(c, d, 1) for c in config.decoder_in_channels]
        extra_in = config.decoder_in_channels[-1]
        for _ in range(config.num_feature_levels - len(config.decoder_in_channels)):
            self.decoder_input_proj.append(Conv2d(extra_in, d, 3, stride=2, padding=1))
            extra_in = d
        self.decoder = Decoder(config)
        self._anchors: dict[tuple, tuple[mx.array, mx.array]] = {}

    def set_eager(self, eager: bool) -> None:
        """Evaluate block by block and large convolutions in bands (the default: bounded memory, see
        ``backbone.evaluated`` and ``backbone.Conv2d``) or build one graph (for ``mx.compile`` and
        other function transforms)."""
        for _, module in self.named_modules():
            if hasattr(module, "eager"):
                module.eager = eager

    def anchors(self, shapes: list[tuple[int, int]]) -> tuple[mx.array, mx.array]:
        if self.config.anchor_image_size:  # fixed anchors for the configured image size
            ah, aw = self.config.anchor_image_size
            shapes = [(int(ah / s), int(aw / s)) for s in self.config.feat_strides]
        key = tuple(shapes)
        if key not in self._anchors:
            self._anchors[key] = make_anchors(list(shapes))
        return self._anchors[key]

    def __call__(self, pixels: mx.array, queries: mx.array | None = None) -> DetectorOutput:
        """pixels: (B, H, W, 3) float, as the image processor gives them. ``queries`` (B, Q) picks the
        encoder tokens to decode instead of the top Q by score (the parity tests pass transformers'
        choice where two scores at the cut are closer than fp32 noise). The stages are its methods:
        ``backbone``, ``encode``, ``select_queries``, ``decoder``."""
        backbone_maps = self.backbone(pixels)
        encoder_maps = self.encode(backbone_maps)
        selected = self.select_queries(encoder_maps, queries)
        logits, boxes = self.decoder(selected.target, selected.memory, selected.shapes, selected.ref_logits)
        return DetectorOutput(logits, boxes, backbone_maps, encoder_maps, selected.enc_logits, selected.topk,
                              selected.shapes)  # fmt: skip

    def encode(self, backbone_maps: list[mx.array]) -> list[mx.array]:
        """The hybrid encoder on the projected backbone maps."""
        return self.encoder([proj(m) for proj, m in zip(self.encoder_input_proj, backbone_maps, strict=True)])

    def select_queries(self, encoder_maps: list[mx.array], queries: mx.array | None = None) -> Selection:
        """The decoder's inputs: every level's tokens as one memory, the encoder's heads over them,
        and the top ``num_queries`` tokens by score (or ``queries``) with their reference boxes."""
        sources = [proj(m) for proj, m in zip(self.decoder_input_proj, encoder_maps, strict=False)]
        for proj in self.decoder_input_proj[len(sources) :]:  # extra levels: from the last map, as transformers
            sources.append(proj(encoder_maps[-1]))
        shapes = [(s.shape[1], s.shape[2]) for s in sources]
        b = encoder_maps[0].shape[0]
        memory = mx.concatenate([s.reshape(b, -1, s.shape[-1]) for s in sources], axis=1)

        anchors, valid = self.anchors(shapes)
        out_memory = self.enc_output[1](self.enc_output[0](valid.astype(memory.dtype) * memory))
        enc_logits = self.enc_score_head(out_memory)
        enc_boxes = self.enc_bbox_head(out_memory) + anchors.astype(memory.dtype)
        k = self.config.num_queries
        topk = mx.argsort(-enc_logits.max(axis=-1), axis=-1)[:, :k] if queries is None else queries  # descending
        ref_logits = mx.take_along_axis(enc_boxes, topk[..., None], axis=1)
        target = mx.take_along_axis(out_memory, topk[..., None], axis=1)
        return Selection(target, memory, ref_logits, shapes, enc_logits, topk)

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Checkpoint tensors -> this model's parameters. Idempotent: a converted file passes through.

        Takes transformers' names (4.49 as on the hub, or 5.x): drops the ``model.`` prefix, the
        training-only tensors and the tied copies of the heads; folds each BatchNorm into the conv
        before it (``w * g / sqrt(var + eps)``, ``b - mean * g / sqrt(var + eps)``) and makes the conv
        OHWI. Every conv of this model has a BatchNorm, so a conv without one is already folded."""
        out: dict[str, mx.array] = {}
        for name, value in weights.items():
            name = name.removeprefix("model.")
            if name.startswith(("denoising_class_embed.", "class_embed.", "bbox_embed.")) or name.endswith(
                ("num_batches_tracked", "n_points_scale")
            ):
                continue  # training only; the heads' top-level names tie to decoder.class_embed/bbox_embed
            for old, new in _RENAMES:
                name = re.sub(old, new, name)
            out[name] = value
        for bn in [n.removesuffix(".running_mean") for n in out if n.endswith(".running_mean")]:
            parent, _, bn_name = bn.rpartition(".")
            conv = f"{parent}.{_CONV_OF_NORM[bn_name]}"
            eps = 1e-5 if parent.startswith(("backbone.", "encoder_input_proj.")) else self.config.batch_norm_eps
            scale = out.pop(f"{bn}.weight") * mx.rsqrt(out.pop(f"{bn}.running_var") + eps)
            shift = out.pop(f"{bn}.bias") - out.pop(f"{bn}.running_mean") * scale
            weight = out.pop(f"{conv}.weight")
            bias = out.pop(f"{conv}.bias", None)
            target = _fused_conv_name(parent)
            out[f"{target}.weight"] = (weight * scale[:, None, None, None]).transpose(0, 2, 3, 1)
            out[f"{target}.bias"] = shift if bias is None else bias * scale + shift
        return out


# transformers 5 names -> the hub's 4.49 names (which this model's attributes mirror); backbone paths
# shortened.
_RENAMES = (
    (r"\.o_proj\.", ".out_proj."),
    (r"\.mlp\.fc([12])\.", r".fc\1."),
    (r"^encoder\.aifi\.", "encoder.encoder."),
    (r"^backbone\.model\.embedder\.embedder\.", "backbone.embedder."),
    (r"^backbone\.model\.encoder\.stages\.(\d+)\.layers\.", r"backbone.stages.\1."),
)
_CONV_OF_NORM = {"normalization": "convolution", "norm": "conv", "1": "0"}


def _fused_conv_name(parent: str) -> str:
    """Where a folded conv lives: ``ConvNorm.conv``, ``Shortcut.conv`` or the projection itself."""
    if parent.startswith(("encoder_input_proj.", "decoder_input_proj.")):
        return parent
    return re.sub(r"\.shortcut\.1$", ".shortcut", parent) + ".conv"
