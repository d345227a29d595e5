"""The detector's settings, read from an RT-DETR-v2 ``config.json`` (Hugging Face field names)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...core.errors import ModelLoadError
from ..base import check_positive_ints, check_positive_numbers, fields_from_dict, is_int

SUPPORTED_ACTIVATIONS = ("relu", "silu", "gelu")


@dataclass
class BackboneConfig:
    """transformers' RT-DETR ResNet (``config.json`` -> ``backbone_config``): R18/34 ("basic") or
    R50/101 ("bottleneck"), with the "vd" stem and shortcuts."""

    model_type: str = "rt_detr_resnet"
    num_channels: int = 3
    embedding_size: int = 64
    hidden_sizes: list[int] = field(default_factory=lambda: [256, 512, 1024, 2048])
    depths: list[int] = field(default_factory=lambda: [3, 4, 6, 3])
    layer_type: str = "bottleneck"
    hidden_act: str = "relu"
    downsample_in_first_stage: bool = False
    downsample_in_bottleneck: bool = False
    out_indices: list[int] = field(default_factory=lambda: [2, 3, 4])

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> BackboneConfig:
        params = dict(params)
        if params.get("out_indices") is None and params.get("out_features"):
            params["out_indices"] = [int(name.removeprefix("stage")) for name in params["out_features"]]
        return fields_from_dict(cls, {k: v for k, v in params.items() if v is not None})

    @property
    def out_channels(self) -> list[int]:
        sizes = [self.embedding_size, *self.hidden_sizes]  # index 0 is the stem
        return [sizes[i] for i in self.out_indices]


@dataclass
class DetectorConfig:
    """``RTDetrV2Config``: the fields inference needs, with transformers' defaults."""

    backbone: BackboneConfig
    id2label: dict[int, str]
    layer_norm_eps: float = 1e-5
    batch_norm_eps: float = 1e-5
    encoder_hidden_dim: int = 256
    encoder_in_channels: list[int] = field(default_factory=lambda: [512, 1024, 2048])
    feat_strides: list[int] = field(default_factory=lambda: [8, 16, 32])
    encoder_layers: int = 1
    encoder_ffn_dim: int = 1024
    encoder_attention_heads: int = 8
    encode_proj_layers: list[int] = field(default_factory=lambda: [2])
    positional_encoding_temperature: int = 10000
    encoder_activation_function: str = "gelu"
    activation_function: str = "silu"
    eval_size: Any = None
    normalize_before: bool = False
    hidden_expansion: float = 1.0
    d_model: int = 256
    num_queries: int = 300
    decoder_in_channels: list[int] = field(default_factory=lambda: [256, 256, 256])
    decoder_ffn_dim: int = 1024
    num_feature_levels: int = 3
    decoder_n_points: int = 4
    decoder_layers: int = 6
    decoder_attention_heads: int = 8
    decoder_activation_function: str = "relu"
    learn_initial_query: bool = False
    anchor_image_size: Any = None
    with_box_refine: bool = True
    decoder_n_levels: int = 3
    decoder_offset_scale: float = 0.5
    decoder_method: str = "default"
    dtype: str = "float32"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # config.json as read, written back

    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> DetectorConfig:
        """Read an RT-DETR-v2 ``config.json`` (ours or Hugging Face's); ``ModelLoadError`` if it
        describes something this implementation does not run."""
        model_type = params.get("model_type")
        if model_type not in ("rt_detr_v2", "rt_detr"):
            raise ModelLoadError(
                f"config.json describes a {model_type!r} model; expected an 'rt_detr_v2' detector such as "
                "ogkalu/comic-text-and-bubble-detector"
            )
        backbone_params = params.get("backbone_config") or {}
        if backbone_params.get("model_type", "rt_detr_resnet") != "rt_detr_resnet" or params.get("use_timm_backbone"):
            raise ModelLoadError(
                f"unsupported detector backbone {backbone_params.get('model_type')!r}: only transformers' "
                "RT-DETR ResNet (model_type 'rt_detr_resnet') is implemented"
            )
        names = {f.name for f in dataclasses.fields(cls)} - {"backbone", "id2label", "raw", "dtype"}
        values = {k: v for k, v in params.items() if k in names and v is not None}
        id2label = {int(k): str(v) for k, v in (params.get("id2label") or {}).items()}
        if not id2label:
            raise ModelLoadError("config.json has no id2label: the detector's labels are unknown")
        config = cls(
            backbone=BackboneConfig.from_dict(backbone_params),
            id2label=id2label,
            dtype=_dtype(params.get("mlx_mangaocr")),
            raw={k: v for k, v in params.items() if k != "mlx_mangaocr"},
            **values,
        )
        config.validate()
        return config

    def check_sizes(self) -> None:
        """``ModelLoadError`` unless every size is a whole number >= 1 (checked before the rest)."""
        b = self.backbone
        check_positive_ints("backbone_config.", {"num_channels": b.num_channels, "embedding_size": b.embedding_size})
        check_positive_ints("backbone_config.", {"hidden_sizes": b.hidden_sizes, "depths": b.depths,
                                                 "out_indices": b.out_indices}, lists=True)  # fmt: skip
        scalars = ("encoder_hidden_dim", "encoder_ffn_dim", "encoder_attention_heads", "d_model", "num_queries",
                   "decoder_ffn_dim", "num_feature_levels", "decoder_n_points", "decoder_layers",
                   "decoder_attention_heads", "decoder_n_levels", "positional_encoding_temperature")  # fmt: skip
        check_positive_ints("", {name: getattr(self, name) for name in scalars})
        lists = ("encoder_in_channels", "feat_strides", "decoder_in_channels")
        check_positive_ints("", {name: getattr(self, name) for name in lists}, lists=True)
        if not isinstance(self.encode_proj_layers, (list, tuple)):
            raise ModelLoadError(f"config.json: encode_proj_layers must be a list, got {self.encode_proj_layers!r}")
        for name in ("anchor_image_size",):  # (eval_size only switches the positions off)
            value, stride = getattr(self, name), max(self.feat_strides)
            pair = isinstance(value, (list, tuple)) and len(value) == 2
            if value is not None and not (pair and all(is_int(v) and v >= stride for v in value)):
                raise ModelLoadError(f"config.json: {name} must be null or [height, width], each at least the "
                                     f"largest stride {max(self.feat_strides)}, got {value!r}")  # fmt: skip
        layers = self.encoder_layers
        if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
            raise ModelLoadError(f"config.json: encoder_layers must be a whole number >= 0, got {layers!r}")
        check_positive_numbers("", {"layer_norm_eps": self.layer_norm_eps, "batch_norm_eps": self.batch_norm_eps,
                                    "hidden_expansion": self.hidden_expansion})  # fmt: skip
        if len(b.hidden_sizes) != len(b.depths) or max(b.out_indices) > len(b.hidden_sizes):
            raise ModelLoadError("config.json: backbone_config's hidden_sizes, depths and out_indices disagree")
        if not all(isinstance(i, int) and 0 <= i < len(self.encoder_in_channels) for i in self.encode_proj_layers):
            raise ModelLoadError(f"config.json: encode_proj_layers {self.encode_proj_layers!r} name no feature level")
        if int(self.encoder_hidden_dim * self.hidden_expansion) < 1:
            raise ModelLoadError("config.json: encoder_hidden_dim x hidden_expansion is below 1")

    def parameter_count_at_least(self) -> int:
        """A lower bound on the detector's parameters from the sizes alone (the largest weights of
        the backbone, encoder and decoder; biases, norms and heads left out), nothing built."""
        b, total = self.backbone, 0
        for depth, out in zip(b.depths, b.hidden_sizes, strict=True):
            mid = out // 4
            total += depth * (9 * mid * mid + mid * out if b.layer_type == "bottleneck" else 9 * out * out)
        e, hidden = self.encoder_hidden_dim, int(self.encoder_hidden_dim * self.hidden_expansion)
        total += self.encoder_layers * len(self.encode_proj_layers) * (4 * e * e + 2 * e * self.encoder_ffn_dim)
        total += 2 * (len(self.encoder_in_channels) - 1) * 3 * 10 * hidden * hidden  # CSP layers' RepVGG blocks
        d, heads = self.d_model, self.decoder_attention_heads
        sampling = d * heads * self.decoder_n_levels * self.decoder_n_points * 3  # offsets and attention weights
        total += self.decoder_layers * (6 * d * d + sampling + 2 * d * self.decoder_ffn_dim)
        return total

    def validate(self) -> None:
        self.check_sizes()
        problems = []
        if sorted(self.id2label) != list(range(len(self.id2label))):
            problems.append(f"id2label keys must be 0..n-1, got {sorted(self.id2label)}")
        if self.backbone.layer_type not in ("basic", "bottleneck"):
            problems.append(f"backbone layer_type {self.backbone.layer_type!r}")
        for name in ("encoder_activation_function", "activation_function", "decoder_activation_function"):
            if getattr(self, name) not in SUPPORTED_ACTIVATIONS:
                problems.append(f"{name} {getattr(self, name)!r} (supported: {', '.join(SUPPORTED_ACTIVATIONS)})")
        if self.backbone.hidden_act not in SUPPORTED_ACTIVATIONS:
            problems.append(f"backbone hidden_act {self.backbone.hidden_act!r}")
        if self.decoder_method not in ("default", "discrete"):
            problems.append(f"decoder_method {self.decoder_method!r}")
        if self.d_model % self.decoder_attention_heads or self.encoder_hidden_dim % self.encoder_attention_heads:
            problems.append("a hidden size is not a multiple of its number of attention heads")
        if self.encoder_hidden_dim % 4:
            problems.append(f"encoder_hidden_dim {self.encoder_hidden_dim} is not a multiple of 4")
        if list(self.encoder_in_channels) != self.backbone.out_channels:
            problems.append(
                f"encoder_in_channels {list(self.encoder_in_channels)} differ from the backbone's outputs "
                f"{self.backbone.out_channels}"
            )
        if len(self.feat_strides) != len(self.encoder_in_channels) or self.decoder_n_levels != self.num_feature_levels:
            problems.append("feat_strides, encoder_in_channels and the decoder's levels disagree")
        if not self.with_box_refine:
            problems.append("with_box_refine false")
        if self.learn_initial_query:  # transformers' own inference fails on it (Embedding.tile): no oracle
            problems.append("learn_initial_query true")
        if problems:
            raise ModelLoadError("unsupported detector config.json: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` written with a converted detector: Hugging Face's, plus our metadata."""
        return {**self.raw, "mlx_mangaocr": {"format_version": 1, "dtype": self.dtype}}


def _dtype(meta) -> str:
    dtype = meta.get("dtype", "float32") if isinstance(meta, dict) else "float32"
    if dtype not in ("float32", "float16", "bfloat16"):
        raise ModelLoadError(f"config.json: unreadable mlx_mangaocr settings {meta!r}")
    return dtype
