"""Model and generation settings, read from a checkpoint's ``config.json``.

Field names are the Hugging Face ones, so the same code reads an unconverted
``VisionEncoderDecoderModel`` config and the config this library writes.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ...core.errors import ModelLoadError
from ..base import check_positive_ints, check_positive_numbers, fields_from_dict, is_int

SUPPORTED_ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")

# Keys that transformers takes from the top level of config.json into the generation config.
GENERATION_KEYS = (
    "decoder_start_token_id",
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "max_length",
    "min_length",
    "num_beams",
    "no_repeat_ngram_size",
    "length_penalty",
    "early_stopping",
)


DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob")


def check_probabilities(where: str, config) -> None:
    """Dropout probabilities must be numbers in [0, 1)."""
    for name in DROPOUT_FIELDS:
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ModelLoadError(f"config.json: {where}{name} must be a number in [0, 1), got {value!r}")


@dataclass
class VisionConfig:
    """The ViT encoder (``config.json`` -> ``encoder``)."""

    model_type: str = "vit"
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    hidden_dropout_prob: float = 0.0  # used in training only, as transformers' ViT
    attention_probs_dropout_prob: float = 0.0

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> VisionConfig:
        config = fields_from_dict(cls, params)
        sizes = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
                 "patch_size", "num_channels")  # fmt: skip
        check_positive_ints("encoder.", {name: getattr(config, name) for name in sizes})
        check_positive_numbers("encoder.", {"layer_norm_eps": config.layer_norm_eps})
        check_probabilities("encoder.", config)
        if config.patch_size > config.image_size:
            raise ModelLoadError(
                f"config.json: encoder.patch_size {config.patch_size} > image_size {config.image_size}"
            )
        return config

    def parameter_count(self) -> int:
        """The encoder's parameters, as ``VisionEncoder`` builds them (computed, nothing built)."""
        h, i = self.hidden_size, self.intermediate_size
        qkv = 3 * (h * h + (h if self.qkv_bias else 0))
        layer = qkv + (h * h + h) + (h * i + i) + (i * h + h) + 4 * h  # attention, output, MLP, two LayerNorms
        embeddings = self.num_channels * self.patch_size**2 * h + h + h + (self.num_patches + 1) * h
        return embeddings + self.num_hidden_layers * layer + 2 * h


@dataclass
class TextConfig:
    """The BERT decoder with cross-attention (``config.json`` -> ``decoder``)."""

    model_type: str = "bert"
    vocab_size: int = 6144
    hidden_size: int = 768
    num_hidden_layers: int = 2
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-12
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    is_decoder: bool = True
    add_cross_attention: bool = True
    hidden_dropout_prob: float = 0.1  # used in training only, as transformers' BERT
    attention_probs_dropout_prob: float = 0.1

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> TextConfig:
        config = fields_from_dict(cls, params)
        sizes = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                 "max_position_embeddings", "type_vocab_size")  # fmt: skip
        check_positive_ints("decoder.", {name: getattr(config, name) for name in sizes})
        check_positive_numbers("decoder.", {"layer_norm_eps": config.layer_norm_eps})
        check_probabilities("decoder.", config)
        return config

    def parameter_count(self) -> int:
        """The decoder's parameters with its LM head, as ``TextDecoder`` builds them."""
        h, i, v = self.hidden_size, self.intermediate_size, self.vocab_size
        attention = 4 * (h * h + h) + 2 * h  # query, key, value, output; LayerNorm
        layer = 2 * attention + (h * i + i) + (i * h + h) + 2 * h  # self, cross, MLP, LayerNorm
        embeddings = (v + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h
        head = (h * h + h) + 2 * h + v * h + v
        return embeddings + self.num_hidden_layers * layer + head


@dataclass
class GenerationConfig:
    """Decoding settings; defaults are transformers' own, used where the checkpoint is silent."""

    decoder_start_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    pad_token_id: int | None = None
    max_length: int = 20
    min_length: int = 0
    num_beams: int = 1
    no_repeat_ngram_size: int = 0
    length_penalty: float = 1.0
    early_stopping: bool | str = False

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> GenerationConfig:
        return fields_from_dict(cls, {k: v for k, v in params.items() if v is not None})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def updated(self, **overrides: Any) -> GenerationConfig:
        """A copy with the given keywords replaced; ``None`` means "keep the checkpoint's value"."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown decoding option(s): {', '.join(sorted(unknown))}")
        new = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        new.validate()
        return new

    def validate(self) -> None:
        if self.decoder_start_token_id is None:
            raise ModelLoadError("config.json has no decoder_start_token_id (manga-ocr uses 2, [CLS])")
        if self.eos_token_id is None:
            raise ModelLoadError("config.json has no eos_token_id (manga-ocr uses 3, [SEP])")
        if not isinstance(self.num_beams, int) or self.num_beams < 1:
            raise ValueError(f"num_beams must be a whole number >= 1, got {self.num_beams!r}")
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ValueError(f"max_length counts the start token and must be at least 2, got {self.max_length!r}")
        if not isinstance(self.min_length, int) or not 0 <= self.min_length <= self.max_length:
            raise ValueError(f"min_length must be a whole number from 0 to max_length, got {self.min_length!r}")
        if not isinstance(self.no_repeat_ngram_size, int) or self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be a whole number >= 0, got {self.no_repeat_ngram_size!r}")
        if (
            isinstance(self.length_penalty, bool)
            or not isinstance(self.length_penalty, (int, float))
            or not (math.isfinite(self.length_penalty))
        ):
            raise ValueError(f"length_penalty must be a finite number, got {self.length_penalty!r}")
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")


@dataclass
class ModelConfig:
    """Everything the library needs to build and run the model."""

    encoder: VisionConfig
    decoder: TextConfig
    generation: GenerationConfig
    tie_word_embeddings: bool = False
    quantization: dict[str, int] | None = None
    dtype: str = "float32"

    @classmethod
    def from_dict(cls, params: dict[str, Any], generation: dict[str, Any] | None = None) -> ModelConfig:
        """Read a VisionEncoderDecoder ``config.json`` (ours or Hugging Face's).

        ``generation`` is the content of ``generation_config.json`` when the checkpoint has one; as
        in transformers it then replaces the generation keys at the top level of ``config.json``.
        """
        model_type = params.get("model_type")
        if model_type != "vision-encoder-decoder":
            raise ModelLoadError(
                f"config.json describes a {model_type!r} model; expected a 'vision-encoder-decoder' "
                "(ViT encoder + BERT decoder) such as kha-white/manga-ocr-base"
            )
        enc, dec = params.get("encoder"), params.get("decoder")
        if not isinstance(enc, dict) or not isinstance(dec, dict):
            raise ModelLoadError("config.json lacks the 'encoder' and 'decoder' sections")
        if enc.get("model_type") not in ("vit", "deit"):
            raise ModelLoadError(
                f"encoder is {enc.get('model_type')!r}; only a ViT encoder (model_type 'vit') is supported"
            )
        if dec.get("model_type") != "bert":
            raise ModelLoadError(
                f"decoder is {dec.get('model_type')!r}; only a BERT decoder (model_type 'bert') is supported"
            )
        if not dec.get("add_cross_attention", False):
            raise ModelLoadError("the BERT decoder has no cross-attention (add_cross_attention is false)")
        vision, text = VisionConfig.from_dict(enc), TextConfig.from_dict(dec)
        for part in (vision, text):
            if part.hidden_act not in SUPPORTED_ACTIVATIONS:
                raise ModelLoadError(f"unsupported hidden_act {part.hidden_act!r} in the {part.model_type} config")
            if part.hidden_size % part.num_attention_heads:
                raise ModelLoadError(
                    f"{part.model_type}: hidden_size {part.hidden_size} is not a multiple of "
                    f"num_attention_heads {part.num_attention_heads}"
                )
        if vision.hidden_size != text.hidden_size:
            raise ModelLoadError(
                f"the encoder's hidden_size {vision.hidden_size} differs from the decoder's {text.hidden_size}: "
                "such a model needs a projection between them, which manga-ocr does not have"
            )
        gen_source = generation if generation is not None else params
        gen = GenerationConfig.from_dict({k: gen_source.get(k) for k in GENERATION_KEYS})
        gen.validate()
        for name in ("decoder_start_token_id", "bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(gen, name)
            if value is not None and not (is_int(value) and 0 <= value < text.vocab_size):
                raise ModelLoadError(f"config.json: {name} must be a token id below vocab_size {text.vocab_size}, "
                                     f"got {value!r}")  # fmt: skip
        if gen.max_length - 1 > text.max_position_embeddings:
            raise ModelLoadError(f"config.json: max_length {gen.max_length} needs {gen.max_length - 1} decoder "
                                 f"positions; the decoder has {text.max_position_embeddings}")  # fmt: skip
        if not isinstance(dec.get("tie_word_embeddings", True), bool):
            raise ModelLoadError(f"config.json: decoder.tie_word_embeddings must be true or false, got "
                                 f"{dec.get('tie_word_embeddings')!r}")  # fmt: skip
        quantization = params.get("quantization")
        if quantization is not None and not (
            isinstance(quantization, dict)
            and quantization.get("bits") in (2, 3, 4, 6, 8)
            and quantization.get("group_size") in (32, 64, 128)
        ):
            raise ModelLoadError(
                "config.json: quantization must be {'bits': 2|3|4|6|8, 'group_size': 32|64|128}, "
                f"got {quantization!r}"
            )
        mlx_meta = params.get("mlx_mangaocr") or {}
        if not isinstance(mlx_meta, dict) or mlx_meta.get("dtype", "float32") not in ("float32", "float16", "bfloat16"):
            raise ModelLoadError(f"config.json: unreadable mlx_mangaocr settings {mlx_meta!r}")
        return cls(
            encoder=vision,
            decoder=text,
            generation=gen,
            # The BERT decoder ties its LM head unless its own config says otherwise.
            tie_word_embeddings=bool(dec.get("tie_word_embeddings", True)),
            quantization=quantization,
            dtype=mlx_meta.get("dtype", "float32"),
        )

    def parameter_count(self) -> int:
        """How many parameters the model has (before quantization), from the sizes alone."""
        return self.encoder.parameter_count() + self.decoder.parameter_count()

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` written with a converted model (Hugging Face layout, pruned)."""
        encoder = dataclasses.asdict(self.encoder)
        decoder = dataclasses.asdict(self.decoder)
        decoder["tie_word_embeddings"] = False  # a converted file holds the LM head itself
        out: dict[str, Any] = {
            "model_type": "vision-encoder-decoder",
            "architectures": ["VisionEncoderDecoderModel"],
            "encoder": encoder,
            "decoder": decoder,
            **self.generation.to_dict(),
            "mlx_mangaocr": {"format_version": 1, "dtype": self.dtype},
        }
        if self.quantization:
            out["quantization"] = self.quantization
        return out
