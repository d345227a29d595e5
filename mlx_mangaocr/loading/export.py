"""An OCR model folder back to the Hugging Face layout (``mlx-mangaocr export``).

A model converted by ``mlx-mangaocr convert`` (or fine-tuned here and saved the same way) is written
as the ``VisionEncoderDecoderModel`` folder that upstream manga-ocr and transformers load, with the
tensor names and layouts transformers itself saves (the hub checkpoint's names, which transformers 5
writes back on ``save_pretrained`` and transformers 4 uses as they are):

- ``model.safetensors`` (metadata ``{"format": "pt"}``): the patch conv back from OHWI to OIHW; the LM
  bias under both ``decoder.cls.predictions.bias`` and ``decoder.cls.predictions.decoder.bias`` (the
  same values: transformers 4 ties the two, transformers 5 keeps both for an untied head and uses the
  Linear's); the LM head's own weight (``tie_word_embeddings`` false); and the encoder's pooler, which
  generation never uses but transformers builds: the source's own when it has one (an unconverted
  Hugging Face folder), else zeros. No ``position_ids`` buffers (transformers does not save them).
- ``config.json`` (a ``VisionEncoderDecoderConfig`` with the generation settings at the top level, as
  the hub's has them), ``generation_config.json``, ``preprocessor_config.json``, ``vocab.txt``,
  ``tokenizer_config.json`` (the source's, else BertJapaneseTokenizer as manga-ocr-base's decoder)
  and ``special_tokens_map.json``.

The folder is written beside the target as ``NAME.partial`` and renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import mlx.core as mx
from mlx.utils import tree_flatten

from ..core.errors import ModelLoadError
from ..core.files import read_json, read_regular
from ..models.ocr.config import GENERATION_KEYS
from ..models.ocr.model import HEAD_BIAS, HEAD_DECODER_BIAS, PATCH_CONV
from .checkpoints import read_weights, resolve_source
from .ocr import DEFAULT_MODEL, Checkpoint, download, load_checkpoint

POOLER = ("encoder.pooler.dense.weight", "encoder.pooler.dense.bias")
HF_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "special_tokens_map.json",
    "tokenizer_config.json",
    "vocab.txt",
)

# manga-ocr-base's decoder tokenizer (cl-tohoku/bert-base-japanese-char-v2): what upstream loads.
TOKENIZER_CONFIG = {
    "tokenizer_class": "BertJapaneseTokenizer",
    "do_lower_case": False,
    "word_tokenizer_type": "mecab",
    "subword_tokenizer_type": "character",
    "mecab_kwargs": {"mecab_dic": "unidic_lite"},
    "model_max_length": 512,
}

# Values transformers needs that an MLX config.json does not carry: manga-ocr-base's own (its
# encoder is DeiT-base's ViT config, its decoder BERT's); the MLX config's values override them.
ENCODER_DEFAULTS: dict[str, Any] = {
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
}
DECODER_DEFAULTS: dict[str, Any] = {
    "hidden_dropout_prob": 0.1,
    "attention_probs_dropout_prob": 0.1,
    "initializer_range": 0.02,
    "position_embedding_type": "absolute",
    "use_cache": True,
    "classifier_dropout": None,
}


def _is_hf_export(folder: Path) -> bool:
    """Whether ``folder`` is a model folder that an export may replace whole: config.json and
    model.safetensors, and no training run's state in it."""
    names = {p.name for p in folder.iterdir()}
    return {"config.json", "model.safetensors"} <= names and not {"training.json", "resume"} & names


def export_hf(source: str | Path, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write the OCR model ``source`` (a converted MLX folder, an unconverted Hugging Face folder or
    a hub id: anything ``load_checkpoint`` takes) to ``out_dir`` in the Hugging Face layout, and
    return ``out_dir``. A converted folder's weights keep the dtype they are stored in (float32,
    float16 or bfloat16); an unconverted folder's are written in float32, as the loader reads them.

    Raises ``ModelLoadError`` for a missing, broken or quantized source (transformers cannot load
    MLX quantized weights), ``FileExistsError`` for an ``out_dir`` that is a file or a non-empty
    folder (unless ``overwrite``), ``ValueError`` for an ``out_dir`` inside the source folder (or
    holding it). Nothing is left half written: the folder appears complete or not at all.
    """
    out = Path(os.path.abspath(Path(out_dir).expanduser()))  # "hf/.." is the folder it names
    if not out.name:
        raise ValueError(f"{out_dir}: give the folder to write, not the file system's root")
    folder = resolve_source(source, download, DEFAULT_MODEL)
    partial = out.with_name(out.name + ".partial")
    replaced = out.with_name(out.name + ".replaced")
    _check_apart(folder, (out, partial, replaced))
    if out.is_symlink():
        raise FileExistsError(f"{out} is a symbolic link: give the folder it points to, or another name")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (--force) to replace it")
    if out.is_dir() and any(out.iterdir()) and not _is_hf_export(out):
        raise FileExistsError(
            f"{out} is not a Hugging Face model folder (no config.json with model.safetensors, or "
            "it holds a training run): --force replaces only a model folder; give another name"
        )

    raw_config = _model_config(folder)
    checkpoint = load_checkpoint(folder)
    weights = hf_weights(checkpoint, _source_pooler(folder, raw_config))

    tokenizer_config = _tokenizer_config(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove(partial)  # a killed export's
    try:
        partial.mkdir()
        write_hf_folder(checkpoint, weights, partial, tokenizer_config)
        _put_in_place(partial, out, replaced)
    except BaseException:
        _remove(partial)
        raise
    return out


def hf_config(checkpoint: Checkpoint) -> dict[str, Any]:
    """``config.json`` for transformers: a ``VisionEncoderDecoderConfig`` dict (ViT encoder, BERT
    decoder with cross-attention, untied head), generation settings at the top level."""
    config = checkpoint.config
    mlx = config.to_dict()
    generation = generation_settings(checkpoint)
    encoder = {**mlx["encoder"], "model_type": "vit"}  # the weights are in ViT's layout whatever the name
    for key, value in {**ENCODER_DEFAULTS, "encoder_stride": config.encoder.patch_size}.items():
        encoder.setdefault(key, value)
    decoder = {**mlx["decoder"], "model_type": "bert", "is_decoder": True, "add_cross_attention": True,
               "tie_word_embeddings": False}  # fmt: skip
    for key, value in {**DECODER_DEFAULTS, "pad_token_id": generation.get("pad_token_id", 0)}.items():
        decoder.setdefault(key, value)
    return {
        "architectures": ["VisionEncoderDecoderModel"],
        "model_type": "vision-encoder-decoder",
        "is_encoder_decoder": True,
        "tie_word_embeddings": False,
        "dtype": config.dtype,  # transformers 5 loads the weights in this dtype
        "torch_dtype": config.dtype,  # the same, under transformers 4's name
        "encoder": encoder,
        "decoder": decoder,
        **generation,
    }


def generation_settings(checkpoint: Checkpoint) -> dict[str, Any]:
    """The decoding settings (``generation_config.json``, and the top of ``config.json``)."""
    values = checkpoint.config.generation.to_dict()
    if values.get("min_length") == 0:  # transformers' default: manga-ocr-base does not name it
        values.pop("min_length")
    return {key: values[key] for key in GENERATION_KEYS if values.get(key) is not None}


def hf_weights(checkpoint: Checkpoint, pooler: dict[str, mx.array] | None = None) -> dict[str, mx.array]:
    """The model's tensors under the names and in the layouts transformers saves them."""
    if checkpoint.config.quantization:
        raise ModelLoadError(_quantized_message(checkpoint.source, checkpoint.config.quantization))
    weights = dict(tree_flatten(checkpoint.model.parameters()))
    weights[PATCH_CONV] = weights[PATCH_CONV].transpose(0, 3, 1, 2)  # OHWI -> OIHW
    weights[HEAD_DECODER_BIAS] = weights[HEAD_BIAS]
    dtype = weights[PATCH_CONV].dtype
    hidden = checkpoint.config.encoder.hidden_size
    if pooler is None or set(pooler) != set(POOLER) or tuple(pooler[POOLER[0]].shape) != (hidden, hidden):
        pooler = {POOLER[0]: mx.zeros((hidden, hidden)), POOLER[1]: mx.zeros((hidden,))}
    weights.update({name: value.astype(dtype) for name, value in pooler.items()})
    return weights


def write_hf_folder(checkpoint: Checkpoint, weights: dict[str, mx.array], out: Path,
                    tokenizer_config: bytes | None = None) -> None:  # fmt: skip
    """Write the Hugging Face files into the existing folder ``out``."""
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "pt"})
    texts = {
        "config.json": hf_config(checkpoint),
        "generation_config.json": generation_settings(checkpoint),
        "preprocessor_config.json": preprocessor_config(checkpoint),
        "special_tokens_map.json": dict(checkpoint.vocab.special_tokens),
    }
    for name, content in texts.items():
        (out / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if tokenizer_config is None:
        tokenizer_config = (json.dumps(TOKENIZER_CONFIG, indent=2) + "\n").encode("utf-8")
    (out / "tokenizer_config.json").write_bytes(tokenizer_config)
    (out / "vocab.txt").write_text("".join(t + "\n" for t in checkpoint.vocab.tokens), encoding="utf-8")


def preprocessor_config(checkpoint: Checkpoint) -> dict[str, Any]:
    """``preprocessor_config.json`` as transformers' ``ViTImageProcessor.save_pretrained`` writes it."""
    p = checkpoint.image_processor
    return {
        "do_normalize": bool(p.do_normalize),
        "do_rescale": bool(p.do_rescale),
        "do_resize": bool(p.do_resize),
        "image_mean": list(p.image_mean),
        "image_processor_type": "ViTImageProcessor",
        "image_std": list(p.image_std),
        "resample": int(p.resample),
        "rescale_factor": p.rescale_factor,
        "size": {"height": p.height, "width": p.width},
    }


def _quantized_message(folder: Path, quantization: dict) -> str:
    return (
        f"{folder} is quantized ({quantization.get('bits')}-bit, group size {quantization.get('group_size')}): "
        "Hugging Face cannot load MLX quantized weights; export the float model it was made from "
        "(converted without -q)"
    )


def _model_config(folder: Path) -> dict[str, Any]:
    """The source's ``config.json``, checked to be an OCR model that is not quantized."""
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a model folder")
    config = read_json(path)
    model_type = config.get("model_type")
    if model_type != "vision-encoder-decoder":
        raise ModelLoadError(
            f"{path} describes a {model_type!r} model: only the manga-ocr OCR model ('vision-encoder-decoder') "
            "is exported"
        )
    quantization = config.get("quantization")
    if quantization:
        raise ModelLoadError(_quantized_message(folder, quantization if isinstance(quantization, dict) else {}))
    return config


def _source_pooler(folder: Path, raw_config: dict[str, Any]) -> dict[str, mx.array] | None:
    """The encoder's pooler from an unconverted Hugging Face folder (converted folders drop it)."""
    if "mlx_mangaocr" in raw_config:
        return None
    return {name: value for name, value in read_weights(folder).items() if name in POOLER} or None


def _tokenizer_config(folder: Path) -> bytes | None:
    """The source's ``tokenizer_config.json`` as it is, when it has one (checked to be a JSON object)."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return None
    read_json(path)
    try:
        return read_regular(path)
    except OSError as e:
        raise ModelLoadError(f"cannot read {path}: {e.strerror or e}") from None


def _check_apart(folder: Path, paths: tuple[Path, ...]) -> None:
    """``ValueError`` when any path written or replaced is the source folder, inside it or holds it."""
    source = folder.resolve()
    for path in paths:
        target = path.resolve()
        if target == source or source in target.parents:
            raise ValueError(f"{path} is inside the source folder {folder}: choose an output folder outside it")
        if target in source.parents:
            raise ValueError(f"{path} holds the source folder {folder}: choose an output folder outside it")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def _put_in_place(partial: Path, out: Path, replaced: Path) -> None:
    """Rename the complete ``partial`` folder to ``out``; an existing ``out`` is moved aside first
    and removed only once the new folder is in place (put back if the rename fails)."""
    if not out.exists():
        partial.rename(out)
        return
    _remove(replaced)
    out.rename(replaced)
    try:
        partial.rename(out)
    except BaseException:
        with contextlib.suppress(OSError):
            replaced.rename(out)
        raise
    shutil.rmtree(replaced, ignore_errors=True)
