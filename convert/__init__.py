"""Convert a Hugging Face manga-ocr checkpoint into an MLX model folder.

python -m convert kha-white/manga-ocr-base [-o OUT] [--dtype float32|float16|bfloat16]
                  [-q [--q-bits 4|8] [--q-group-size 64]] [--force]
"""

from __future__ import annotations

from pathlib import Path

from mlx_mangaocr.loading import load_checkpoint, save_checkpoint
from mlx_mangaocr.model_cache import cache_folder


def default_output(source: str, dtype: str, quantize: dict[str, int] | None = None) -> Path:
    """Where a converted model goes when no ``-o`` is given: the per-user model cache."""
    return cache_folder(source, dtype, quantize)


def convert(
    source: str,
    output: str | Path | None = None,
    dtype: str = "float32",
    force: bool = False,
    quantize: dict[str, int] | None = None,
) -> Path:
    """Load ``source`` (hub id or folder), check every tensor, cast to ``dtype``, optionally
    quantize (``{"bits": 8, "group_size": 64}``) and write an MLX model folder; return its path.
    Refuses to write into a non-empty folder unless ``force``."""
    out = Path(output) if output else default_output(source, dtype, quantize)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is a file")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty; pass --force to overwrite it")
    checkpoint = load_checkpoint(source, dtype=dtype, quantize=quantize)
    return save_checkpoint(checkpoint, out, overwrite=force)
