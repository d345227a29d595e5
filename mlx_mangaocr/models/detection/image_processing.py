"""The detector's preprocessing: transformers' ``RTDetrImageProcessor`` (PIL backend), to the bit.

RGB, resize to the configured size with PIL (bilinear by default, aspect not kept), rescale by
1/255 through float64, no normalisation unless the config asks for it. Channels last here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...core.errors import ModelLoadError
from ...core.files import read_json
from ...core.images import ImageInput, load_page, rescale
from ..base import check_preprocessing


@dataclass
class DetectorPreprocessor:
    """The settings of an RT-DETR ``preprocessor_config.json``, with transformers' defaults."""

    height: int = 640
    width: int = 640
    resample: int = Image.Resampling.BILINEAR
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = False
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> DetectorPreprocessor:
        size = params.get("size", {"height": 640, "width": 640})
        if isinstance(size, int):
            size = {"height": size, "width": size}
        if not (isinstance(size, dict) and "height" in size and "width" in size):
            raise ModelLoadError(f"unsupported detector 'size' in preprocessor_config.json: {size!r}")
        if params.get("do_pad"):
            raise ModelLoadError("a detector preprocessor_config.json with do_pad is not supported")
        defaults = cls()
        processor = cls(
            height=size["height"],
            width=size["width"],
            resample=params.get("resample", defaults.resample),
            do_resize=params.get("do_resize", True),
            do_rescale=params.get("do_rescale", True),
            rescale_factor=params.get("rescale_factor", 1 / 255),
            do_normalize=params.get("do_normalize", False),
            image_mean=params.get("image_mean") or defaults.image_mean,
            image_std=params.get("image_std") or defaults.image_std,
        )
        flags = {"do_resize": processor.do_resize, "do_rescale": processor.do_rescale,
                 "do_normalize": processor.do_normalize}  # fmt: skip
        check_preprocessing(processor.height, processor.width, processor.resample, flags, processor.rescale_factor,
                            processor.image_mean, processor.image_std, smallest=32)  # fmt: skip
        processor.image_mean, processor.image_std = tuple(processor.image_mean), tuple(processor.image_std)
        return processor

    @classmethod
    def from_folder(cls, folder: str | Path) -> DetectorPreprocessor:
        path = Path(folder) / "preprocessor_config.json"
        if not path.is_file():
            return cls()  # transformers' defaults, as RTDetrImageProcessor() without a file
        return cls.from_dict(read_json(path))

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_processor_type": "RTDetrImageProcessor",
            "do_resize": self.do_resize,
            "size": {"height": self.height, "width": self.width},
            "resample": int(self.resample),
            "do_rescale": self.do_rescale,
            "rescale_factor": self.rescale_factor,
            "do_normalize": self.do_normalize,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "do_pad": False,
        }

    def __call__(self, image: ImageInput) -> tuple[np.ndarray, tuple[int, int]]:
        """One image -> (float32 pixels (H, W, 3) channels last, the original (height, width))."""
        img = load_page(image)
        size = (img.height, img.width)
        if self.do_resize:
            img = img.resize((self.width, self.height), resample=self.resample)
        pixels = np.asarray(img)
        pixels = rescale(pixels, self.rescale_factor) if self.do_rescale else pixels.astype(np.float32)
        if self.do_normalize:
            pixels = (pixels - np.array(self.image_mean, np.float32)) / np.array(self.image_std, np.float32)
        return pixels, size


DetectorImageProcessor = DetectorPreprocessor  # the first name (transformers' word), kept
