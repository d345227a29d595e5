"""Random-weight manga-ocr checkpoints in the real Hugging Face layout, built with transformers.

Used by the tests (as the oracle's model) and by ``python -m benchmarks --synthetic``.

The real kha-white/manga-ocr-base weights cannot be downloaded here, so tests build checkpoints
of the same architecture and file layout (see ../shared/MODEL.md) and use transformers as the
oracle. Random logits are nearly flat, so the LM head input is scaled up to separate the argmax,
and the [SEP] bias is set to steer how long the outputs get.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import BertConfig, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

from mlx_mangaocr.loading.export import TOKENIZER_CONFIG  # the hub's tokenizer settings, one copy

SHARED = Path(os.environ.get("MANGAOCR_SHARED", Path(__file__).resolve().parents[2] / "shared"))
EXAMPLES = SHARED / "data" / "manga-ocr-examples"
IMAGES = sorted((EXAMPLES / "images").glob("*.jpg"))

GENERATION = {
    "decoder_start_token_id": 2,
    "eos_token_id": 3,
    "pad_token_id": 0,
    "max_length": 300,
    "num_beams": 4,
    "no_repeat_ngram_size": 3,
    "length_penalty": 2.0,
    "early_stopping": True,
}

PREPROCESSOR = {
    "do_normalize": True,
    "do_resize": True,
    "feature_extractor_type": "ViTFeatureExtractor",
    "image_mean": [0.5, 0.5, 0.5],
    "image_std": [0.5, 0.5, 0.5],
    "resample": 2,
    "size": 224,
}


SPECIAL_TOKENS_MAP = {
    "unk_token": "[UNK]",
    "sep_token": "[SEP]",
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
}

# transformers 5 keeps ViT weights under new names in memory; the real checkpoint has the old ones.
_LEGACY_VIT_NAMES = [
    (r"^encoder\.layers\.(\d+)\.", r"encoder.encoder.layer.\1."),
    (r"\.attention\.q_proj\.", ".attention.attention.query."),
    (r"\.attention\.k_proj\.", ".attention.attention.key."),
    (r"\.attention\.v_proj\.", ".attention.attention.value."),
    (r"\.attention\.o_proj\.", ".attention.output.dense."),
    (r"\.mlp\.fc1\.", ".intermediate.dense."),
    (r"\.mlp\.fc2\.", ".output.dense."),
]


@dataclass(frozen=True)
class Spec:
    """What to build. ``full`` is the real size (111 M parameters)."""

    full: bool = False
    small: bool = False  # the training benchmark's size: a 4-layer, 256-wide ViT and the 2-layer decoder
    image_size: int = 224
    patch_size: int = 16
    hidden: int | None = None  # with small: another width (heads of 64, an MLP of 4x)
    tied: bool = False
    weights: str = "safetensors"  # or "bin"
    seed: int = 0
    head_scale: float = 8.0  # multiplies the LM head's LayerNorm gain: sharper logits
    sep_bias: float = 0.0  # added to the [SEP] logit: higher ends sooner
    cross_scale: float = 1.0  # multiplies the cross-attention output: lets the image steer the text
    position_ids: bool = False  # include the legacy position_ids buffer


# Full size (ViT-base/224 + 2-layer BERT, 111 M parameters), as the tests and the benchmark use it:
# sep_bias 38 gives outputs from 6 to 300 tokens over the shared images.
FULL = Spec(full=True, head_scale=30.0, sep_bias=38.0, cross_scale=5.0)
# The same size, ending sooner (the realistic page benchmark): sep_bias 41 ends the crops of six of
# the eleven shared text crops within 2 to 6 new tokens; on the other five it repeats a token up to
# max_length.
SHORT = Spec(full=True, head_scale=30.0, sep_bias=41.0, cross_scale=5.0)


def vocab_tokens() -> list[str]:
    """6144 tokens laid out as the real vocab: specials, <unused0..9>, then characters at their
    real ids; ids absent from vocab.csv get '##' word pieces, which decode must join."""
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"<unused{i}>" for i in range(10)]
    tokens += [None] * (6144 - len(tokens))
    with open(EXAMPLES / "vocab.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))[1:]
    chars = {int(i): c for i, c in rows}
    for i, c in chars.items():
        tokens[i] = c
    pieces = iter(sorted(set(chars.values())))
    return [t if t is not None else "##" + next(pieces) for t in tokens]


def _configs(spec: Spec) -> tuple[ViTConfig, BertConfig]:
    if spec.full:
        size = dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072)
        enc_layers = 12
    elif spec.small:
        hidden = spec.hidden or 256
        size = dict(hidden_size=hidden, num_attention_heads=max(1, hidden // 64), intermediate_size=4 * hidden)
        enc_layers = 4
    else:
        size = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128)
        enc_layers = 2
    encoder = ViTConfig(
        image_size=spec.image_size,
        patch_size=spec.patch_size,
        num_channels=3,
        num_hidden_layers=enc_layers,
        qkv_bias=True,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        **size,
    )
    decoder = BertConfig(
        vocab_size=6144,
        num_hidden_layers=2,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
        layer_norm_eps=1e-12,
        is_decoder=True,
        add_cross_attention=True,
        tie_word_embeddings=spec.tied,
        pad_token_id=0,
        **size,
    )
    return encoder, decoder


def build_model(spec: Spec) -> VisionEncoderDecoderModel:
    """A seeded random model, with the head sharpened and the [SEP] bias set."""
    encoder, decoder = _configs(spec)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.tie_word_embeddings = False
    for key, value in GENERATION.items():
        if key != "max_length" and hasattr(config, key):
            setattr(config, key, value)
    torch.manual_seed(spec.seed)
    model = VisionEncoderDecoderModel(config).eval()
    with torch.no_grad():
        # Random init leaves the BERT LayerNorms at 1/0 and biases at 0: give them values too.
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layernorm" in name or name.endswith(".bias"):
                p.add_(torch.randn_like(p) * 0.1)
        for layer in model.decoder.bert.encoder.layer:
            layer.crossattention.output.dense.weight.mul_(spec.cross_scale)
        preds = model.decoder.cls.predictions
        preds.transform.LayerNorm.weight.mul_(spec.head_scale)
        preds.bias[3] += spec.sep_bias
        if preds.decoder.bias is not preds.bias:  # untied: the Linear's own bias is the one used
            preds.decoder.bias[3] += spec.sep_bias
    return model


def legacy_state_dict(model: VisionEncoderDecoderModel, spec: Spec) -> dict[str, torch.Tensor]:
    """The tensors under the names the real checkpoint uses."""
    out = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("encoder.layers."):
            for pattern, repl in _LEGACY_VIT_NAMES:
                name = re.sub(pattern, repl, name)
        out[name] = tensor.detach().clone().contiguous()
    if spec.tied:
        out.pop("decoder.cls.predictions.decoder.weight")
        out.pop("decoder.cls.predictions.decoder.bias", None)
    if spec.position_ids:
        out["decoder.bert.embeddings.position_ids"] = torch.arange(512).unsqueeze(0)
    return out


def config_json(model: VisionEncoderDecoderModel) -> dict:
    """config.json as the hub has it: generation settings at the top level, ImageNet labels kept."""
    config = model.config.to_dict()
    config.update(GENERATION)
    config["encoder"]["id2label"] = {str(i): f"imagenet class {i}" for i in range(10)}
    config["encoder"]["label2id"] = {f"imagenet class {i}": i for i in range(10)}
    return config


def write_checkpoint(folder: Path, spec: Spec) -> VisionEncoderDecoderModel:
    """Write a Hugging Face checkpoint folder for ``spec``; return the in-memory model."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model = build_model(spec)
    state = legacy_state_dict(model, spec)
    if spec.weights == "safetensors":
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(state, folder / "pytorch_model.bin")
    (folder / "config.json").write_text(json.dumps(config_json(model), indent=2), encoding="utf-8")
    preprocessor = {**PREPROCESSOR, "size": spec.image_size}
    (folder / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP, indent=2), encoding="utf-8")
    (folder / "vocab.txt").write_text("".join(t + "\n" for t in vocab_tokens()), encoding="utf-8")
    return model


def load_oracle(folder: Path) -> VisionEncoderDecoderModel:
    """The checkpoint as transformers loads it; fails if any weight was not found in the file."""
    model, info = VisionEncoderDecoderModel.from_pretrained(folder, output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
    if missing or info["mismatched_keys"]:
        raise AssertionError(f"transformers did not load the checkpoint cleanly: {info}")
    return model.eval()
