"""Reading, checking and writing checkpoint folders: what the OCR model and the detector share.

A model source is a local folder or a Hugging Face hub id; weights are ``model.safetensors``
(sharded or not) or ``pytorch_model.bin`` (read through torch, when it is installed).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from ..core.errors import ModelLoadError
from ..core.files import read_json

DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def check_capacity(folder: Path, parameters: int, bytes_per_parameter: float) -> None:
    """``ModelLoadError`` when the config implies more parameters (at least ``parameters``, at
    ``bytes_per_parameter`` or more each) than the weight files can hold: a config that would
    build a model far larger than its weights is refused before it is built."""
    available = sum(f.stat().st_size for f in weight_files(folder))
    if parameters * bytes_per_parameter > available:
        raise ModelLoadError(
            f"{folder / 'config.json'} describes a model of at least {parameters:,} parameters, more than the "
            f"{available:,} bytes of weights in {folder} can hold: a wrong or corrupt config.json"
        )


def _looks_like_repo_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~")) and "\\" not in text


def resolve_source(path_or_repo: str | Path, fetch: Callable[[str], Path], example: str) -> Path:
    """A local folder as it is, or a hub id downloaded (only the files needed: ``fetch(repo_id)``)
    to the HF cache; ``example`` is the hub id the error suggests."""
    if not isinstance(path_or_repo, (str, Path)):
        raise ModelLoadError(
            f"a model is a folder or a hub id such as {example}, got {type(path_or_repo).__name__} {path_or_repo!r}"
        )
    path = Path(path_or_repo).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"expected a model folder, got a file: {path}")
        return path
    if isinstance(path_or_repo, str) and _looks_like_repo_id(path_or_repo):
        return fetch(path_or_repo)
    raise ModelLoadError(f"model folder not found: {path} (nor is it a hub id such as {example})")


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


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's weight files: the shards a ``model.safetensors.index.json`` names (each
    inside ``folder``), else ``model.safetensors``, else ``pytorch_model.bin``."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{index} has no weight_map")
        shards = []
        for shard in sorted({str(s) for s in weight_map.values()}):
            parts = Path(shard).parts
            if Path(shard).is_absolute() or ".." in parts:  # by its name: the hub's cache links its files
                raise ModelLoadError(f"{index} names a weights file outside the model folder: {shard!r}")
            path = folder / shard
            if not path.is_file():
                raise ModelLoadError(f"{index} names {shard}, which is not in {folder}")
            shards.append(path)
        return shards
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return [folder / name]
    raise ModelLoadError(f"{folder} has no weights: expected model.safetensors or pytorch_model.bin")


def read_weights(folder: Path) -> dict[str, mx.array]:
    """Every tensor of the checkpoint, under its file names (not yet sanitized)."""
    files = weight_files(folder)
    if files[0].name == "pytorch_model.bin":
        return _load_torch_bin(files[0])
    weights: dict[str, mx.array] = {}
    for shard in files:
        weights.update(_load_safetensors(shard))
    return weights


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


def write_model_folder(out_dir: str | Path, model, files: dict[str, dict], overwrite: bool = False) -> Path:
    """Write ``model``'s parameters to ``model.safetensors`` and each of ``files`` (name -> content)
    into ``out_dir``; refuse a non-empty folder unless ``overwrite``."""
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite (--force) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    mx.save_safetensors(str(out / "model.safetensors"), weights, metadata={"format": "mlx"})
    for name, content in files.items():
        (out / name).write_text(json.dumps(content, indent=2), encoding="utf-8")
    return out
