"""Finding, reading, checking and saving checkpoints.

A model source is a local folder or a Hugging Face hub id. The folder may hold a model converted
by ``mlx-mangaocr-convert`` or an unconverted Hugging Face ``VisionEncoderDecoderModel`` checkpoint
(``model.safetensors``, or ``pytorch_model.bin`` read through torch): both take the same path,
because ``MangaOcrModel.sanitize`` is idempotent and runs on every load.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from . import hub
from .config import ModelConfig
from .errors import ModelLoadError
from .image_processing import ImageProcessor
from .model import MangaOcrModel
from .text import Vocab

DEFAULT_MODEL = "kha-white/manga-ocr-base"
DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
CONFIG_FILES = ("config.json", "preprocessor_config.json", "vocab.txt")
OPTIONAL_FILES = ("generation_config.json", "tokenizer_config.json", "special_tokens_map.json")
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass
class Checkpoint:
    """A loaded model with everything needed around it."""

    model: MangaOcrModel
    config: ModelConfig
    vocab: Vocab
    image_processor: ImageProcessor
    source: Path


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


def resolve_source(path_or_repo: str | Path, fetch=None, example: str = DEFAULT_MODEL) -> Path:
    """A local folder as it is, or a hub id downloaded (only the files needed: ``fetch(repo_id)``,
    the OCR model's by default) to the HF cache; ``example`` is the hub id the error suggests."""
    path = Path(path_or_repo).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"expected a model folder, got a file: {path}")
        return path
    if isinstance(path_or_repo, str) and _looks_like_repo_id(path_or_repo):
        return (fetch or download)(path_or_repo)
    raise ModelLoadError(f"model folder not found: {path} (nor is it a hub id such as {example})")


def download(repo_id: str) -> Path:
    """Fetch a checkpoint's config, vocab and weights (safetensors if the repo has them, else the
    ``.bin``) from the Hugging Face hub, or from its cache when offline; return the snapshot folder."""
    return hub.download(repo_id, CONFIG_FILES, OPTIONAL_FILES, WEIGHT_FILES)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelLoadError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    return data


def read_config(folder: Path) -> ModelConfig:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a model folder")
    generation_path = folder / "generation_config.json"
    generation = read_json(generation_path) if generation_path.is_file() else None
    return ModelConfig.from_dict(read_json(path), generation)


def _load_safetensors(path: Path) -> dict[str, mx.array]:
    try:
        return mx.load(str(path))
    except Exception as e:  # MLX raises plain RuntimeError/ValueError for a broken file
        raise ModelLoadError(f"cannot read {path} (corrupt or not a safetensors file): {e}") from None


def _load_torch_bin(path: Path) -> dict[str, mx.array]:
    try:
        import torch
    except ImportError:
        raise ModelLoadError(
            f"{path.parent} has only pytorch_model.bin, which needs PyTorch to read: "
            "pip install torch (or give a folder with model.safetensors)"
        ) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ModelLoadError(f"cannot read {path} (corrupt or not a PyTorch checkpoint): {e}") from None
    out = {}
    for name, tensor in state.items():
        if tensor.dtype == torch.bfloat16:  # NumPy has no bfloat16
            out[name] = mx.array(tensor.float().numpy()).astype(mx.bfloat16)
        else:
            out[name] = mx.array(tensor.numpy())
    return out


def read_weights(folder: Path) -> dict[str, mx.array]:
    """Every tensor of the checkpoint, under its file names (not yet sanitized)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        weights: dict[str, mx.array] = {}
        for shard in shards:
            weights.update(_load_safetensors(folder / shard))
        return weights
    if (folder / "model.safetensors").is_file():
        return _load_safetensors(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        return _load_torch_bin(folder / "pytorch_model.bin")
    raise ModelLoadError(f"{folder} has no weights: expected model.safetensors or pytorch_model.bin")


def check_weights(model, weights: dict[str, mx.array]) -> None:
    """Raise ``ModelLoadError`` unless ``weights`` has exactly the model's tensors, shapes included."""
    expected = {name: tuple(p.shape) for name, p in tree_flatten(model.parameters())}
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    misshaped = [
        f"{name}: {tuple(weights[name].shape)} in the file, {shape} expected"
        for name, shape in expected.items()
        if name in weights and tuple(weights[name].shape) != shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing tensor(s), e.g. {', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s), e.g. {', '.join(unexpected[:5])}")
    if misshaped:
        problems.append(f"{len(misshaped)} misshaped tensor(s): {'; '.join(misshaped[:5])}")
    if problems:
        raise ModelLoadError("the checkpoint does not match its config.json: " + "; ".join(problems))


def cast_weights(weights: dict[str, mx.array], dtype: str) -> dict[str, mx.array]:
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    target = DTYPES[dtype]
    return {k: v.astype(target) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}


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
    folder = resolve_source(path_or_repo)
    config = read_config(folder)
    image_processor = ImageProcessor.from_folder(folder)
    vocab = Vocab.from_folder(folder)
    if len(vocab) != config.decoder.vocab_size:
        raise ModelLoadError(
            f"{folder / 'vocab.txt'} has {len(vocab)} tokens but the decoder's vocab_size is "
            f"{config.decoder.vocab_size}: wrong vocab for this model"
        )
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


def write_model_folder(out_dir: str | Path, model, json_files: dict[str, dict], overwrite: bool = False) -> Path:
    """Write ``model``'s parameters to ``model.safetensors`` and each of ``json_files`` (name -> content)
    into ``out_dir``; refuse a non-empty folder unless ``overwrite``."""
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite (--force) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    for name, content in json_files.items():
        (out / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    return out


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
