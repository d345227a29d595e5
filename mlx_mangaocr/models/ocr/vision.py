"""The ViT image encoder. Attribute names mirror Hugging Face's ``ViTModel`` checkpoint names."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.nn.utils import checkpoint

from ..layers import ACTIVATIONS, Dense, Dropout, attention, merge_heads, split_heads
from .config import VisionConfig


class PatchEmbeddings(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            config.num_channels,
            config.hidden_size,
            kernel_size=config.patch_size,
            stride=config.patch_size,
        )

    def __call__(self, pixel_values: mx.array) -> mx.array:
        x = self.projection(pixel_values)  # (B, H/p, W/p, hidden), NHWC
        b, h, w, c = x.shape
        return x.reshape(b, h * w, c)


class Embeddings(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.cls_token = mx.zeros((1, 1, config.hidden_size))
        self.position_embeddings = mx.zeros((1, config.num_patches + 1, config.hidden_size))
        self.patch_embeddings = PatchEmbeddings(config)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def __call__(self, pixel_values: mx.array) -> mx.array:
        patches = self.patch_embeddings(pixel_values)
        cls = mx.broadcast_to(self.cls_token, (patches.shape[0], 1, patches.shape[-1])).astype(patches.dtype)
        return self.dropout(mx.concatenate([cls, patches], axis=1) + self.position_embeddings)


class SelfAttention(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.scale = (h // self.num_heads) ** -0.5
        self.query = nn.Linear(h, h, bias=config.qkv_bias)
        self.key = nn.Linear(h, h, bias=config.qkv_bias)
        self.value = nn.Linear(h, h, bias=config.qkv_bias)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def __call__(self, x: mx.array) -> mx.array:
        q, k, v = (split_heads(proj(x), self.num_heads) for proj in (self.query, self.key, self.value))
        return merge_heads(attention(q, k, v, self.scale, dropout=self.dropout))


class Attention(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.attention = SelfAttention(config)
        self.output = Dense(config.hidden_size, config.hidden_size)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def __call__(self, x: mx.array) -> mx.array:
        return self.dropout(self.output.dense(self.attention(x)))


class Layer(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Dense(config.hidden_size, config.intermediate_size)
        self.output = Dense(config.intermediate_size, config.hidden_size)
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.act = ACTIVATIONS[config.hidden_act]
        self.dropout = Dropout(config.hidden_dropout_prob)

    def __call__(self, x: mx.array) -> mx.array:
        x = x + self.attention(self.layernorm_before(x))
        return x + self.dropout(self.output.dense(self.act(self.intermediate.dense(self.layernorm_after(x)))))


class Encoder(nn.Module):
    def __init__(self, config: VisionConfig):
        super().__init__()
        self.layer = [Layer(config) for _ in range(config.num_hidden_layers)]


class VisionEncoder(nn.Module):
    """Pixels (B, H, W, C), normalized to [-1, 1], -> hidden states (B, 1 + patches, hidden)."""

    def __init__(self, config: VisionConfig):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.checkpoint_layers = False  # training: recompute each layer's activations in the backward pass

    def __call__(self, pixel_values: mx.array, output_hidden_states: bool = False):
        """Return the final hidden states, or with ``output_hidden_states`` also the list of
        the embeddings output and every layer's output (as transformers' ``hidden_states``)."""
        x = self.embeddings(pixel_values)
        states = [x]
        for layer in self.encoder.layer:
            x = checkpoint(layer)(x) if self.checkpoint_layers and self.training else layer(x)
            states.append(x)
        out = self.layernorm(x)
        return (out, states) if output_hidden_states else out
