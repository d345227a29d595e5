"""Loading and saving the OCR model's checkpoints (the generic steps are in ``checkpoints``).

A model source is a local folder or a Hugging Face hub id. The folder may hold a model converted
by ``mlx-mangaocr-convert`` or an unconverted Hugging Face ``VisionEncoderDecoderModel`` checkpoint
(``model.safetensors``, or ``pytorch_model.bin`` read through torch): both take the same path,
because ``MangaOcrModel.sanitize`` is idempotent and runs on every load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from ..core.errors import ModelLoadError
from ..models.ocr.config import ModelConfig
from ..models.ocr.image_processing import OcrPreprocessor
from ..models.ocr.model import MangaOcrModel
from ..models.ocr.text import Vocab
from . import hub
from .checkpoints import (
    WEIGHT_FILES,
    cast_weights,
    check_capacity,
    check_weights,
    read_json,
    read_weights,
    resolve_source,
    write_model_folder,
)

DEFAULT_MODEL = "kha-white/manga-ocr-base"
CONFIG_FILES = ("config.json", "preprocessor_config.json", "vocab.txt")
OPTIONAL_FILES = ("generation_config.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass
class Checkpoint:
    """A loaded model with everything needed around it."""

    model: MangaOcrModel
    config: ModelConfig
    vocab: Vocab
    image_processor: OcrPreprocessor
    source: Path


def download(repo_id: str) -> Path:
    """Fetch a checkpoint's config, vocab and weights (safetensors if the repo has them, else the
    ``.bin``) from the Hugging Face hub, or from its cache when offline; return the snapshot folder."""
    return hub.download(repo_id, CONFIG_FILES, OPTIONAL_FILES, WEIGHT_FILES)


def read_config(folder: Path) -> ModelConfig:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a model folder")
    generation_path = folder / "generation_config.json"
    generation = read_json(generation_path) if generation_path.is_file() else None
    try:
        return ModelConfig.from_dict(read_json(path), generation)
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # a value of the wrong kind somewhere
        raise ModelLoadError(f"{path} is malformed: {e}") from None


def load_checkpoint(
    path_or_repo: str | Path = DEFAULT_MODEL, dtype: str | None = None, quantize: dict[str, int] | None = None
) -> Checkpoint:
    """Load a converted MLX model folder, an unconverted Hugging Face folder, or a hub id.

    ``dtype`` (float32, float16, bfloat16) casts the weights; by default they keep the dtype the
    folder was converted with (float32 for a Hugging Face checkpoint). ``quantize``
    (``{"bits": 4|8, "group_size": 64}``) quantizes a float model after loading; a folder
    converted with quantization is rebuilt quantized from its config. Nothing is returned
    half-loaded: any missing file or tensor raises ``ModelLoadError``.
    """
    folder = resolve_source(path_or_repo, download, DEFAULT_MODEL)
    config = read_config(folder)
    image_processor = OcrPreprocessor.from_folder(folder)
    side = config.encoder.image_size
    if (image_processor.height, image_processor.width) != (side, side):
        raise ModelLoadError(
            f"{folder / 'preprocessor_config.json'} resizes to {image_processor.height}x{image_processor.width}, "
            f"but the encoder's image_size is {side}: the files are not of one model"
        )
    vocab = Vocab.from_folder(folder)
    if len(vocab) != config.decoder.vocab_size:
        raise ModelLoadError(
            f"{folder / 'vocab.txt'} has {len(vocab)} tokens but the decoder's vocab_size is "
            f"{config.decoder.vocab_size}: wrong vocab for this model"
        )
    check_capacity(folder, config.parameter_count(), config.quantization["bits"] / 8 if config.quantization else 2)
    model = MangaOcrModel(config)
    if config.quantization:
        if quantize and quantize != config.quantization:
            raise ValueError(f"{folder} is already quantized ({config.quantization}); convert from the float model")
        model.quantize(**config.quantization)
    weights = model.sanitize(read_weights(folder))
    check_weights(model, weights)
    config.dtype = dtype or config.dtype
    model.load_weights(list(cast_weights(weights, config.dtype).items()), strict=True)
    if quantize and not config.quantization:
        model.quantize(**quantize)
        config.quantization = dict(quantize)
    mx.eval(model.parameters())
    model.eval()
    return Checkpoint(model, config, vocab, image_processor, folder)


def save_checkpoint(checkpoint: Checkpoint, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write an MLX model folder: model.safetensors, config.json, vocab.txt,
    special_tokens_map.json and preprocessor_config.json."""
    files = {
        "config.json": checkpoint.config.to_dict(),
        "preprocessor_config.json": checkpoint.image_processor.to_dict(),
    }
    out = write_model_folder(out_dir, checkpoint.model, files, overwrite)
    checkpoint.vocab.save(out)
    return out
