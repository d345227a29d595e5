"""The BERT text decoder: causal self-attention, cross-attention over the image, post-LayerNorm,
and the masked-LM head. Attribute names mirror Hugging Face's ``BertLMHeadModel``."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..layers import ACTIVATIONS, Dense, Dropout, attention, merge_heads, split_heads
from .config import TextConfig
from .kv_cache import CrossKV, FixedKVCache, KVCache


class Embeddings(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def __call__(self, input_ids: mx.array, positions: mx.array) -> mx.array:
        # manga-ocr never passes token types: every token is type 0.
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)
        return self.dropout(self.LayerNorm(x + self.token_type_embeddings.weight[0]))


class SelfAttention(nn.Module):
    """Query/key/value projections; used for both self- and cross-attention."""

    def __init__(self, config: TextConfig):
        super().__init__()
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.scale = (h // self.num_heads) ** -0.5
        self.query = nn.Linear(h, h)
        self.key = nn.Linear(h, h)
        self.value = nn.Linear(h, h)
        self.dropout = Dropout(config.attention_probs_dropout_prob)

    def project_kv(self, x: mx.array) -> tuple[mx.array, mx.array]:
        return split_heads(self.key(x), self.num_heads), split_heads(self.value(x), self.num_heads)

    def attend(self, x: mx.array, keys: mx.array, values: mx.array, mask: mx.array | None) -> mx.array:
        q = split_heads(self.query(x), self.num_heads)
        return merge_heads(attention(q, keys, values, self.scale, mask, self.dropout))


class Output(nn.Module):
    """dense -> residual add -> LayerNorm (BERT's post-LN)."""

    def __init__(self, config: TextConfig, in_dims: int):
        super().__init__()
        self.dense = nn.Linear(in_dims, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = Dropout(config.hidden_dropout_prob)

    def __call__(self, x: mx.array, residual: mx.array) -> mx.array:
        return self.LayerNorm(self.dropout(self.dense(x)) + residual)


class Attention(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = Output(config, config.hidden_size)


class Layer(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.attention = Attention(config)
        self.crossattention = Attention(config)
        self.intermediate = Dense(config.hidden_size, config.intermediate_size)
        self.output = Output(config, config.intermediate_size)
        self.act = ACTIVATIONS[config.hidden_act]

    def __call__(self, x: mx.array, mask: mx.array | None, cache: KVCache, cross: CrossKV) -> mx.array:
        attn = self.attention
        keys, values = cache.update_and_fetch(*attn.self.project_kv(x))
        x = attn.output(attn.self.attend(x, keys, values, mask), x)
        xattn = self.crossattention
        x = xattn.output(xattn.self.attend(x, cross.keys, cross.values, None), x)
        return self.output(self.act(self.intermediate.dense(x)), x)


class Encoder(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.layer = [Layer(config) for _ in range(config.num_hidden_layers)]


class Bert(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.embeddings = Embeddings(config)
        self.encoder = Encoder(config)


class PredictionHead(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.transform = Dense(config.hidden_size, config.hidden_size)
        self.transform.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = mx.zeros((config.vocab_size,))
        self.act = ACTIVATIONS[config.hidden_act]

    def __call__(self, x: mx.array) -> mx.array:
        x = self.transform.LayerNorm(self.act(self.transform.dense(x)))
        return self.decoder(x) + self.bias


class LMHead(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.predictions = PredictionHead(config)


class TextDecoder(nn.Module):
    """Token ids + caches -> next-token logits."""

    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.bert = Bert(config)
        self.cls = LMHead(config)

    def cross_kv(self, encoder_hidden_states: mx.array) -> list[CrossKV]:
        """Cross-attention keys/values of every layer for these images, to reuse at every step."""
        return [
            CrossKV(*layer.crossattention.self.project_kv(encoder_hidden_states)) for layer in self.bert.encoder.layer
        ]

    def make_cache(self, batch: int, capacity: int, dtype: mx.Dtype = mx.float32) -> list[KVCache]:
        c = self.config
        head_dim = c.hidden_size // c.num_attention_heads
        return [KVCache(batch, c.num_attention_heads, head_dim, capacity, dtype) for _ in self.bert.encoder.layer]

    def __call__(
        self,
        input_ids: mx.array,
        cache: list[KVCache] | list[FixedKVCache],
        cross: list[CrossKV],
        last_only: bool = True,
    ) -> mx.array:
        """Run ``input_ids`` (B, L) at positions ``cache offset .. offset + L - 1``.

        Returns logits (B, vocab) for the last position, or (B, L, vocab) with ``last_only=False``.
        """
        length = input_ids.shape[1]
        x = self.bert.embeddings(input_ids, cache[0].positions(length))
        mask = cache[0].mask(length, x.dtype)
        for layer, layer_cache, layer_cross in zip(self.bert.encoder.layer, cache, cross, strict=True):
            x = layer(x, mask, layer_cache, layer_cross)
        if last_only:
            x = x[:, -1, :]
        return self.cls.predictions(x)
