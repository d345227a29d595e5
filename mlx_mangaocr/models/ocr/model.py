"""The whole VisionEncoderDecoder: a ViT encoder and a BERT decoder, and the weight sanitizer."""

from __future__ import annotations

import re

import mlx.core as mx
import mlx.nn as nn

from ..layers import Dropout
from .config import ModelConfig
from .kv_cache import CrossKV, WholeSequence
from .text_decoder import TextDecoder
from .vision import VisionEncoder

HEAD_WEIGHT = "decoder.cls.predictions.decoder.weight"
HEAD_BIAS = "decoder.cls.predictions.bias"
HEAD_DECODER_BIAS = "decoder.cls.predictions.decoder.bias"
WORD_EMBEDDINGS = "decoder.bert.embeddings.word_embeddings.weight"
PATCH_CONV = "encoder.embeddings.patch_embeddings.projection.weight"

QUANT_BITS = (2, 3, 4, 6, 8)
QUANT_GROUP_SIZES = (32, 64, 128)

# transformers 5 renames ViT weights when it loads them and may save them renamed; map back.
_VIT_RENAMES = [
    (re.compile(r"^encoder\.layers\.(\d+)\."), r"encoder.encoder.layer.\1."),
    (re.compile(r"\.attention\.q_proj\."), ".attention.attention.query."),
    (re.compile(r"\.attention\.k_proj\."), ".attention.attention.key."),
    (re.compile(r"\.attention\.v_proj\."), ".attention.attention.value."),
    (re.compile(r"\.attention\.o_proj\."), ".attention.output.dense."),
    (re.compile(r"\.mlp\.fc1\."), ".intermediate.dense."),
    (re.compile(r"\.mlp\.fc2\."), ".output.dense."),
]


class MangaOcrModel(nn.Module):
    """Image -> encoder hidden states -> cross K/V -> token logits, one step at a time."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = VisionEncoder(config.encoder)
        self.decoder = TextDecoder(config.decoder)
        self.eval()  # dropout only where training asks for it (``model.train()``)

    def __call__(self, pixel_values: mx.array, decoder_input_ids: mx.array) -> mx.array:
        """Teacher forcing, as transformers' forward: logits (B, L, vocab) for every position of
        ``decoder_input_ids`` (B, L), each seeing the image and the positions up to itself."""
        caches = [WholeSequence() for _ in self.decoder.bert.encoder.layer]
        return self.decoder(decoder_input_ids, caches, self.cross_kv(self.encode(pixel_values)), last_only=False)

    def set_dropout(self, p: float) -> None:
        """Set every dropout probability in the model (hidden and attention, encoder and decoder)."""
        for _, module in self.named_modules():
            if isinstance(module, Dropout):
                module.p = float(p)

    def encode(self, pixel_values: mx.array) -> mx.array:
        """Pixels (B, H, W, C) -> encoder hidden states (B, tokens, hidden)."""
        return self.encoder(pixel_values)

    def cross_kv(self, encoder_hidden_states: mx.array) -> list[CrossKV]:
        return self.decoder.cross_kv(encoder_hidden_states)

    def quantize(self, group_size: int, bits: int) -> None:
        """Replace the Linear and Embedding layers by MLX quantized ones (``nn.quantize``), in place.

        The token-type table is kept as it is (the model reads its row 0 directly), and so is any
        layer whose input size is not a multiple of ``group_size``. The patch conv stays float.
        """
        if bits not in QUANT_BITS or group_size not in QUANT_GROUP_SIZES:
            raise ValueError(
                f"quantization needs bits in {QUANT_BITS} and group_size in {QUANT_GROUP_SIZES}, "
                f"got bits={bits}, group_size={group_size}"
            )

        def predicate(path: str, module: nn.Module) -> bool:
            return (
                hasattr(module, "to_quantized")
                and not path.endswith("token_type_embeddings")
                and module.weight.shape[-1] % group_size == 0
            )

        nn.quantize(self, group_size=group_size, bits=bits, class_predicate=predicate)

    def sanitize(self, weights: dict[str, mx.array]) -> dict[str, mx.array]:
        """Map Hugging Face checkpoint weights to this model's names and layouts.

        Idempotent: it runs on every load, on weights already converted too. Drops the pooler and
        ``position_ids`` buffers, accepts transformers-5 ViT names, transposes the patch conv from
        OIHW to OHWI, fills a tied LM head from the word embeddings, and keeps the LM bias transformers uses.
        """
        out: dict[str, mx.array] = {}
        for name, value in weights.items():
            if name.endswith("position_ids") or name.startswith("encoder.pooler."):
                continue
            if name.startswith("encoder.layers."):
                for pattern, repl in _VIT_RENAMES:
                    name = pattern.sub(repl, name)
            out[name] = value

        conv = out.get(PATCH_CONV)
        channels = self.config.encoder.num_channels
        if conv is not None and conv.ndim == 4 and conv.shape[1] == channels and conv.shape[-1] != channels:
            out[PATCH_CONV] = conv.transpose(0, 2, 3, 1)

        # The head's Linear has its own bias (cls.predictions.decoder.bias). transformers ties it
        # to cls.predictions.bias only when the head is tied; untied, the Linear's bias is used.
        decoder_bias = out.pop(HEAD_DECODER_BIAS, None)
        if decoder_bias is not None and (not self.config.tie_word_embeddings or HEAD_BIAS not in out):
            out[HEAD_BIAS] = decoder_bias
        if self.config.tie_word_embeddings and WORD_EMBEDDINGS in out:
            out[HEAD_WEIGHT] = out[WORD_EMBEDDINGS]
        return out
