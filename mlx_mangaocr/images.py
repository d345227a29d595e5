"""Reading images: paths, bytes, PIL images and NumPy arrays, with every check the README lists
(missing, empty, not an image, truncated, over the pixel limit, wrong dtype or shape)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import InvalidImageError

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
