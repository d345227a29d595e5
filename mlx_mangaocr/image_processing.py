"""Reading images and manga-ocr's preprocessing, equal to upstream's to the bit.

Upstream runs ``img.convert("L").convert("RGB")`` and then transformers' ViT image processor
(PIL backend): resize with PIL, ``uint8 -> float64 * rescale_factor -> float32``, then
``(x - mean) / std`` in float32. The same steps, in the same order, are done here with PIL and
NumPy, so the pixel values match exactly.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InvalidImageError, ModelLoadError

ImageInput = str | Path | bytes | bytearray | memoryview | Image.Image | np.ndarray


def max_pixels() -> int | None:
    """The largest image (width x height) read from a file or bytes: Pillow's decompression-bomb
    limit, ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 by default; set it to raise or lift the
    limit). Pillow itself only warns up to twice that size; here anything above it is refused."""
    return Image.MAX_IMAGE_PIXELS


def load_image(image: ImageInput) -> Image.Image:
    """Turn any accepted input into a loaded PIL image, or raise ``InvalidImageError``.

    Accepts a path (str or Path), encoded bytes, a PIL image, or a uint8 NumPy array of shape
    (H, W), (H, W, 3) or (H, W, 4). Animated images give their first frame, as in upstream; the
    EXIF orientation is not applied, as in upstream.
    """
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        return _from_array(image)
    if isinstance(image, (bytes, bytearray, memoryview)):
        if not len(image):
            raise InvalidImageError("the image bytes are empty")
        return _open(io.BytesIO(bytes(image)), "the image bytes")
    if isinstance(image, (str, Path)):
        path = Path(image)
        if not path.exists():
            raise InvalidImageError(f"image file not found: {path}")
        if path.is_dir():
            raise InvalidImageError(f"expected an image file, got a directory: {path}")
        if path.stat().st_size == 0:
            raise InvalidImageError(f"image file is empty (0 bytes): {path}")
        return _open(path, str(path))
    raise InvalidImageError(
        f"unsupported image input of type {type(image).__name__}: pass a path, bytes, a PIL image "
        "or a uint8 NumPy array"
    )


def load_decoded(image: ImageInput) -> Image.Image:
    """``load_image``, then refuse an empty image and decode a lazily opened one here, so that any
    problem is an ``InvalidImageError`` before preprocessing starts."""
    img = load_image(image)
    if img.width == 0 or img.height == 0:
        raise InvalidImageError(f"the image is empty ({img.width}x{img.height})")
    try:
        img.load()  # a PIL image opened lazily by the caller decodes here
    except (OSError, ValueError, EOFError) as e:
        raise InvalidImageError(f"the image could not be decoded (truncated or corrupt?): {e}") from None
    return img


def load_rgb(image: ImageInput) -> Image.Image:
    """``load_decoded``, then made RGB with PIL's ``convert`` (as transformers' RT-DETR processor
    does), or ``InvalidImageError`` for a mode PIL cannot convert. Pages go through here."""
    img = load_decoded(image)
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise InvalidImageError(f"an image of mode {img.mode} cannot be made RGB: {e}") from None


def rescale(pixels: np.ndarray, factor: float) -> np.ndarray:
    """uint8 -> float32 as transformers' PIL backend does it: through float64."""
    return (pixels.astype(np.float64) * factor).astype(np.float32)


def _open(source, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():  # the size check below says it clearly, as an error
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
        with img:
            limit = max_pixels()
            if limit and img.width * img.height > limit:
                raise InvalidImageError(
                    f"{name} is {img.width}x{img.height} = {img.width * img.height:,} pixels, over the "
                    f"{limit:,}-pixel limit (PIL.Image.MAX_IMAGE_PIXELS) that guards against decompression bombs"
                )
            img.load()
            return img.copy()  # the first frame of an animated image, as upstream reads it
    except InvalidImageError:
        raise
    except Image.DecompressionBombError as e:
        raise InvalidImageError(f"{name} is too large to decode safely: {e}") from None
    except UnidentifiedImageError:
        raise InvalidImageError(f"{name} is not an image PIL can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InvalidImageError(f"{name} could not be decoded (truncated or corrupt?): {e}") from None


def _from_array(array: np.ndarray) -> Image.Image:
    if array.dtype != np.uint8:
        hint = " (for floats in [0, 1], pass (array * 255).round().astype(np.uint8))" if array.dtype.kind == "f" else ""
        raise InvalidImageError(f"a NumPy image must be uint8, got {array.dtype}{hint}")
    if array.ndim == 3 and array.shape[2] in (3, 4):
        mode = "RGB" if array.shape[2] == 3 else "RGBA"
    elif array.ndim == 2:
        mode = "L"
    else:
        raise InvalidImageError(f"a NumPy image must be (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise InvalidImageError(f"the image is empty (shape {array.shape})")
    return Image.fromarray(np.ascontiguousarray(array), mode=mode)


@dataclass
class ImageProcessor:
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
    def from_dict(cls, params: dict[str, Any]) -> ImageProcessor:
        size = params.get("size", 224)
        if isinstance(size, int):
            height = width = size
        elif isinstance(size, dict) and "height" in size and "width" in size:
            height, width = size["height"], size["width"]
        else:
            raise ModelLoadError(f"unsupported 'size' in preprocessor_config.json: {size!r}")
        return cls(
            height=height,
            width=width,
            resample=params.get("resample", Image.Resampling.BILINEAR),
            do_resize=params.get("do_resize", True),
            do_rescale=params.get("do_rescale", True),
            rescale_factor=params.get("rescale_factor", 1 / 255),
            do_normalize=params.get("do_normalize", True),
            image_mean=tuple(params.get("image_mean", (0.5, 0.5, 0.5))),
            image_std=tuple(params.get("image_std", (0.5, 0.5, 0.5))),
        )

    @classmethod
    def from_folder(cls, folder: str | Path) -> ImageProcessor:
        from .loading import read_json  # loading imports this module

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
