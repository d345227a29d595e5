"""Reading, checking and saving detector checkpoints (a converted folder, a Hugging Face folder,
or a hub id): the same paths as the OCR model's, through ``DetectorModel.sanitize``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from ..core.errors import ModelLoadError
from ..models.detection.config import DetectorConfig
from ..models.detection.image_processing import DetectorPreprocessor
from ..models.detection.model import DetectorModel
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

DEFAULT_DETECTOR = "ogkalu/comic-text-and-bubble-detector"


@dataclass
class DetectorCheckpoint:
    model: DetectorModel
    config: DetectorConfig
    image_processor: DetectorPreprocessor
    source: Path


def download_detector(repo_id: str) -> Path:
    """A detector's config, preprocessor config and weights from the hub (or its cache offline)."""
    return hub.download(repo_id, ("config.json",), ("preprocessor_config.json",), WEIGHT_FILES)


def read_detector_config(folder: Path) -> DetectorConfig:
    path = folder / "config.json"
    if not path.is_file():
        raise ModelLoadError(f"{folder} has no config.json: not a model folder")
    try:
        return DetectorConfig.from_dict(read_json(path))
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # a value of the wrong kind somewhere
        raise ModelLoadError(f"{path} is malformed: {e}") from None


def load_detector_checkpoint(
    path_or_repo: str | Path = DEFAULT_DETECTOR, dtype: str | None = None
) -> DetectorCheckpoint:
    """Load a detector; any missing file, unsupported config or wrong tensor raises ``ModelLoadError``."""
    folder = resolve_source(path_or_repo, fetch=download_detector, example=DEFAULT_DETECTOR)
    config = read_detector_config(folder)
    image_processor = DetectorPreprocessor.from_folder(folder)
    check_capacity(folder, config.parameter_count_at_least(), 2)
    model = DetectorModel(config)
    weights = model.sanitize({k: v.astype(mx.float32) for k, v in read_weights(folder).items()})
    check_weights(model, weights)
    config.dtype = dtype or config.dtype
    model.load_weights(list(cast_weights(weights, config.dtype).items()), strict=True)
    mx.eval(model.parameters())
    model.eval()
    return DetectorCheckpoint(model, config, image_processor, folder)


def save_detector_checkpoint(checkpoint: DetectorCheckpoint, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write a converted detector folder: model.safetensors (BatchNorms folded), config.json,
    preprocessor_config.json."""
    files = {
        "config.json": checkpoint.config.to_dict(),
        "preprocessor_config.json": checkpoint.image_processor.to_dict(),
    }
    return write_model_folder(out_dir, checkpoint.model, files, overwrite)
