"""The model kinds the library loads, and the one default-model policy.

**Policy.** Wherever a model is named (``load_ocr``, ``load_mlx_processor``, ``load_detector``,
``load_page_reader``, ``MangaOcr``, ``--model``, ``--detector``), ``None`` or the kind's default
hub id means the converted default folder, ``<cache root>/<name>`` (``loading.converted``),
converted from the hub on first use; any other folder or hub id is loaded as given (a converted
folder, or an unconverted Hugging Face folder or hub id converted in memory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ModelLoadError
from ..core.files import read_json
from . import detector, hub, ocr
from .checkpoints import resolve_source
from .converted import converted_folder


@dataclass(frozen=True)
class ModelKind:
    """One kind of model: how to know it, load it and save it, and its default."""

    name: str  # "ocr" or "detector"
    default: str  # the default hub id
    option: str  # the command-line option that names one
    model_types: tuple[str, ...]  # config.json model_type values of this kind
    load: Callable  # (folder or hub id, dtype=..., ...) -> checkpoint
    save: Callable  # (checkpoint, folder, overwrite) -> folder


KINDS = {
    "ocr": ModelKind("ocr", ocr.DEFAULT_MODEL, "--model", ("vision-encoder-decoder",), ocr.load_checkpoint,
                     ocr.save_checkpoint),
    "detector": ModelKind("detector", detector.DEFAULT_DETECTOR, "--detector", ("rt_detr_v2", "rt_detr"),
                          detector.load_detector_checkpoint, detector.save_detector_checkpoint),
}  # fmt: skip


def resolve_model(kind: str, source: str | Path | None) -> str | Path:
    """What to load for ``source`` under the policy: the converted default folder (converting it
    first if needed) for None or the default hub id, else ``source`` itself."""
    k = KINDS[kind]
    if source is None or (isinstance(source, (str, Path)) and str(source) == k.default):
        return converted_folder(k.default, k.load, k.save, k.option)
    return source


def kind_of(source: str | Path) -> ModelKind:
    """The kind of a folder or hub id, from its ``config.json`` (fetched alone for a hub id)."""
    folder = resolve_source(source, lambda repo: hub.download(repo, ("config.json",)), KINDS["ocr"].default)
    if not (folder / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a model folder")
    model_type = read_json(folder / "config.json").get("model_type")
    for kind in KINDS.values():
        if model_type in kind.model_types:
            return kind
    raise ModelLoadError(
        f"{folder / 'config.json'} describes a {model_type!r} model: expected the manga-ocr model "
        "('vision-encoder-decoder') or the comic text detector ('rt_detr_v2')"
    )
