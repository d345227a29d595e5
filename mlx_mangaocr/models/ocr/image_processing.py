"""manga-ocr's preprocessing, equal to upstream's to the bit.

Upstream runs ``img.convert("L").convert("RGB")`` and then transformers' ViT image processor
(PIL backend): resize with PIL, ``uint8 -> float64 * rescale_factor -> float32``, then
``(x - mean) / std`` in float32. The same steps, in the same order, are done here with PIL and
NumPy, so the pixel values match exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...core.errors import InvalidImageError, ModelLoadError
from ...core.files import read_json
from ...core.images import ImageInput, load_decoded, rescale
from ..base import check_preprocessing


@dataclass
class OcrPreprocessor:
    """The settings of ``preprocessor_config.json`` that manga-ocr uses."""

    height: int = 224
    width: int = 224
    resample: int = Image.Resampling.BILINEAR
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    image_std: tuple[float, ...] = (0.5, 0.5, 0.5)

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> OcrPreprocessor:
        size = params.get("size", 224)
        if isinstance(size, int):
            height = width = size
        elif isinstance(size, dict) and "height" in size and "width" in size:
            height, width = size["height"], size["width"]
        else:
            raise ModelLoadError(f"unsupported 'size' in preprocessor_config.json: {size!r}")
        processor = cls(
            height=height,
            width=width,
            resample=params.get("resample", Image.Resampling.BILINEAR),
            do_resize=params.get("do_resize", True),
            do_rescale=params.get("do_rescale", True),
            rescale_factor=params.get("rescale_factor", 1 / 255),
            do_normalize=params.get("do_normalize", True),
            image_mean=params.get("image_mean", (0.5, 0.5, 0.5)),
            image_std=params.get("image_std", (0.5, 0.5, 0.5)),
        )
        processor.check()
        processor.image_mean, processor.image_std = tuple(processor.image_mean), tuple(processor.image_std)
        return processor

    def check(self) -> None:
        """``ModelLoadError`` for a value no image can be preprocessed with (``base.check_preprocessing``)."""
        flags = {"do_resize": self.do_resize, "do_rescale": self.do_rescale, "do_normalize": self.do_normalize}
        check_preprocessing(self.height, self.width, self.resample, flags, self.rescale_factor, self.image_mean,
                            self.image_std)  # fmt: skip

    @classmethod
    def from_folder(cls, folder: str | Path) -> OcrPreprocessor:
        path = Path(folder) / "preprocessor_config.json"
        if not path.is_file():
            raise ModelLoadError(f"{folder} has no preprocessor_config.json")
        return cls.from_dict(read_json(path))

    def to_dict(self) -> dict[str, Any]:
        """The legacy ``preprocessor_config.json`` that manga-ocr-base ships."""
        return {
            "do_normalize": self.do_normalize,
            "do_rescale": self.do_rescale,
            "do_resize": self.do_resize,
            "feature_extractor_type": "ViTFeatureExtractor",
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "resample": int(self.resample),
            "rescale_factor": self.rescale_factor,
            "size": {"height": self.height, "width": self.width},
        }

    def __call__(self, image: ImageInput) -> np.ndarray:
        """One image -> float32 pixels (H, W, 3), channels last, ready for the encoder."""
        img = load_decoded(image)
        try:
            img = img.convert("L").convert("RGB")
        except ValueError as e:  # e.g. LAB: Pillow cannot make it grayscale, nor can upstream
            message = f"an image of mode {img.mode} cannot be made grayscale as manga-ocr does: {e}"
            raise InvalidImageError(message) from None
        if self.do_resize:
            img = img.resize((self.width, self.height), resample=self.resample)
        pixels = np.asarray(img)
        if self.do_rescale:
            pixels = rescale(pixels, self.rescale_factor)
        else:
            pixels = pixels.astype(np.float32)
        if self.do_normalize:
            mean = np.array(self.image_mean, dtype=np.float32)
            std = np.array(self.image_std, dtype=np.float32)
            pixels = (pixels - mean) / std
        return pixels

    def batch(self, images: list[ImageInput]) -> np.ndarray:
        """Several images -> float32 pixels (B, H, W, 3)."""
        return np.stack([self(image) for image in images])


ImageProcessor = OcrPreprocessor  # the first name (transformers' word), kept; "processor" is the OCR API
