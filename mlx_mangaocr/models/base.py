"""What both models' configs share: building a dataclass from ``config.json`` (unknown keys ignored,
as mlx-lm's ``ModelArgs``) and checking its sizes before anything is built from them."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..core.errors import ModelLoadError


def fields_from_dict(cls, params: dict[str, Any]):
    """Build a dataclass from a dict, ignoring keys it does not know (as mlx-lm's ModelArgs)."""
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in params.items() if k in names})


MAX_INPUT_PIXELS = 2**26  # a model input (height x width) larger than this is no model of these kinds


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_positive_ints(where: str, values: dict[str, Any], lists: bool = False) -> None:
    """``ModelLoadError`` unless every value is a whole number >= 1 (with ``lists``, a non-empty
    list of them): a size from ``config.json`` is checked before anything is built from it."""
    for name, value in values.items():
        items = value if lists and isinstance(value, (list, tuple)) else [value]
        if lists and not (isinstance(value, (list, tuple)) and value):
            raise ModelLoadError(f"config.json: {where}{name} must be a non-empty list of whole numbers >= 1, "
                                 f"got {value!r}")  # fmt: skip
        for item in items:
            if not is_int(item) or item < 1:
                raise ModelLoadError(f"config.json: {where}{name} must be a whole number >= 1, got {value!r}")


def check_positive_numbers(where: str, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value > 0 and math.isfinite(value)):
            raise ModelLoadError(f"config.json: {where}{name} must be a finite number > 0, got {value!r}")


def check_bools(where: str, values: dict[str, Any]) -> None:
    for name, value in values.items():
        if not isinstance(value, bool):
            raise ModelLoadError(f"{where}{name} must be true or false, got {value!r}")


def check_preprocessing(height, width, resample, flags: dict[str, Any], rescale_factor, mean, std,
                        smallest: int = 1) -> None:  # fmt: skip
    """``preprocessor_config.json``'s values, before any image is resized by them: the input size
    (whole numbers from ``smallest``, at most ``MAX_INPUT_PIXELS``), a resampling filter Pillow has,
    true/false flags, a finite positive rescale factor, three means and three positive std values."""
    where = "preprocessor_config.json: "
    for value in (height, width):
        if not is_int(value) or value < smallest:
            raise ModelLoadError(f"{where}the input size must be whole numbers >= {smallest}, got {value!r}")
    if height * width > MAX_INPUT_PIXELS:
        raise ModelLoadError(f"{where}an input of {height}x{width} is over the {MAX_INPUT_PIXELS:,}-pixel limit")
    if not is_int(resample) or resample not in range(6):
        raise ModelLoadError(f"{where}resample must be one of Pillow's filters 0-5, got {resample!r}")
    check_bools(where, flags)
    if (
        isinstance(rescale_factor, bool)
        or not isinstance(rescale_factor, (int, float))
        or not (rescale_factor > 0 and math.isfinite(rescale_factor))
    ):
        raise ModelLoadError(f"{where}rescale_factor must be a finite number > 0, got {rescale_factor!r}")
    for name, values in (("image_mean", mean), ("image_std", std)):
        ok = isinstance(values, (list, tuple)) and len(values) == 3
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
        if not ok or (name == "image_std" and not all(v > 0 for v in values)):
            raise ModelLoadError(f"{where}{name} must be three finite numbers{' > 0' if name == 'image_std' else ''}, "
                                 f"got {values!r}")  # fmt: skip
