"""The per-user folder of converted models (not a cache of results: the models themselves), where
the default models are converted on first use (``registry``)."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..core.errors import ModelLoadError


def cache_root() -> Path:
    """``$MLX_MANGAOCR_HOME``, else ``$XDG_CACHE_HOME/mlx-mangaocr``, else ``~/.cache/mlx-mangaocr``."""
    root = os.environ.get("MLX_MANGAOCR_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "mlx-mangaocr"
    return Path(root).expanduser()


def cache_folder(source: str, dtype: str = "float32", quantize: dict[str, int] | None = None) -> Path:
    """Where ``mlx-mangaocr-convert SOURCE`` writes by default: the cache root / NAME[-DTYPE][-qBgG]."""
    name = Path(str(source).rstrip("/")).name or "model"
    if dtype != "float32":
        name += f"-{dtype}"
    if quantize:
        name += f"-q{quantize['bits']}g{quantize['group_size']}"
    return cache_root() / name


def converted_folder(repo_id: str, load, save, option: str) -> Path:
    """``repo_id`` converted into the cache root, converting it there first if needed: ``load(repo_id)``
    then ``save(checkpoint, folder)``, written to a ``.partial`` folder renamed when complete."""
    folder = cache_folder(repo_id)
    if (folder / "model.safetensors").is_file():
        return folder
    # A library logs, never prints: with no logging set up, Python shows a warning on stderr anyway.
    logging.getLogger("mlx_mangaocr").warning("mlx-mangaocr: first use: converting %s into %s ...", repo_id, folder)
    try:
        checkpoint = load(repo_id)
    except ModelLoadError as e:
        raise ModelLoadError(
            f"no converted model in {folder}, and {repo_id} could not be fetched: {e}.\n"
            f"Connect to the internet and run `mlx-mangaocr-convert {repo_id}` (or run this command again: "
            f"it converts on first use), or pass {option} with a converted or Hugging Face model folder."
        ) from None
    partial = folder.with_name(folder.name + ".partial")  # renamed when complete: never half a model
    if partial.exists():
        shutil.rmtree(partial)
    save(checkpoint, partial)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    return folder
