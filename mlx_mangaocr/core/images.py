"""Reading images: paths, bytes, PIL images and NumPy arrays, with every check the README lists
(missing, unreadable, empty, not an image, truncated, over the pixel limit, wrong dtype or shape).

Crops are read as upstream manga-ocr reads them (EXIF orientation not applied); pages read from
files and bytes as mokuro and every image viewer show them (``load_page``: EXIF orientation applied)."""

from __future__ import annotations

import io
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError, features

from .errors import InvalidImageError
from .names import display_name

ImageInput = str | Path | bytes | bytearray | memoryview | Image.Image | np.ndarray


def _suffixes() -> tuple[str, ...]:
    found = [".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff"]
    if features.check("webp"):
        found.append(".webp")
    if "avif" in features.modules and features.check_module("avif"):  # Pillow's AVIF plugin: 11.2 on
        found.append(".avif")
    return tuple(found)


# The one set of image files, for crops and pages alike, in every mode (folders of crops, --pages,
# --watch, volumes and archives): the suffixes of the formats this Pillow decodes.
IMAGE_SUFFIXES = _suffixes()


def is_image_name(name: str | Path) -> bool:
    """Whether a file name has one of ``IMAGE_SUFFIXES`` (any case)."""
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix), sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image_name(p) and p.is_file())


def max_pixels() -> int | None:
    """The largest image (width x height) read from a file or bytes: Pillow's decompression-bomb
    limit, ``PIL.Image.MAX_IMAGE_PIXELS`` (89,478,485 by default; set it to raise or lift the
    limit). Pillow itself only warns up to twice that size; here anything above it is refused."""
    return Image.MAX_IMAGE_PIXELS


def load_image(image: ImageInput, name: str | None = None) -> Image.Image:
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
        return _open(io.BytesIO(bytes(image)), name or "the image bytes")
    if isinstance(image, (str, Path)):
        return _open_path(Path(image))
    raise InvalidImageError(
        f"unsupported image input of type {type(image).__name__}: pass a path, bytes, a PIL image "
        "or a uint8 NumPy array"
    )


def load_decoded(image: ImageInput, name: str | None = None) -> Image.Image:
    """``load_image``, then refuse an empty image and decode a lazily opened one here, so that any
    problem is an ``InvalidImageError`` before preprocessing starts."""
    img = load_image(image, name)
    if img.width == 0 or img.height == 0:
        raise InvalidImageError(f"the image is empty ({img.width}x{img.height})")
    try:
        img.load()  # a PIL image opened lazily by the caller decodes here
    except (OSError, ValueError, EOFError) as e:
        raise InvalidImageError(f"the image could not be decoded (truncated or corrupt?): {e}") from None
    return img


ORIENTATION = 0x0112  # the EXIF tag


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation says (as viewers, browsers and OpenCV's imread show
    it); the image itself when it has no orientation to apply (or an EXIF block PIL cannot parse)."""
    try:
        orientation = img.getexif().get(ORIENTATION, 1)
    except Exception:  # a corrupt EXIF block: viewers ignore it too
        return img
    if orientation not in range(2, 9):
        return img
    try:
        return ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError) as e:
        raise InvalidImageError(f"the image's EXIF orientation could not be applied: {e}") from None


def load_page(image: ImageInput, name: str | None = None) -> Image.Image:
    """A page: ``load_decoded``; read from a file or bytes, turned upright by its EXIF orientation
    (a PIL image passed in is taken as it is: its EXIF may describe the file it came from, not its
    pixels); then made RGB with PIL's ``convert`` (as transformers' RT-DETR processor does), or
    ``InvalidImageError`` for a mode PIL cannot convert. Pages and the detector's inputs go through
    here; crops do not."""
    img = load_decoded(image, name)
    if not isinstance(image, Image.Image):
        img = upright(img)
    if img.mode == "RGB":
        return img
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise InvalidImageError(f"an image of mode {img.mode} cannot be made RGB: {e}") from None


def check_many(images, method: str) -> None:
    """``TypeError`` when a method that takes an iterable of images is given one image: a path
    would otherwise be read as its characters, each a file name."""
    if isinstance(images, (str, Path, bytes, bytearray, memoryview, Image.Image)):
        raise TypeError(
            f"{method} takes an iterable of images, got one {type(images).__name__}: pass [image] (or use the "
            "single-image method)"
        )


def rescale(pixels: np.ndarray, factor: float) -> np.ndarray:
    """uint8 -> float32 as transformers' PIL backend does it: through float64."""
    return (pixels.astype(np.float64) * factor).astype(np.float32)


def _open_path(path: Path) -> Image.Image:
    name = display_name(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise InvalidImageError(f"image file not found: {name}") from None
    except OSError as e:  # a folder on the way that cannot be searched, a link loop, ...
        raise InvalidImageError(f"cannot open {name}: {e.strerror or e}") from None
    if path.is_dir():
        raise InvalidImageError(f"expected an image file, got a directory: {name}")
    if not stat.S_ISREG(info.st_mode):  # a FIFO would make the read wait forever
        raise InvalidImageError(f"{name} is not a regular file")
    if info.st_size == 0:
        raise InvalidImageError(f"image file is empty (0 bytes): {name}")
    try:
        f = open(path, "rb")  # noqa: SIM115 (closed below)
    except OSError as e:  # no read permission: say so, not "corrupt"
        raise InvalidImageError(f"cannot open {name}: {e.strerror or e}") from None
    with f:
        return _open(f, name)


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
    except Image.DecompressionBombError as e:  # Pillow's own check, at twice the limit
        raise InvalidImageError(
            f"{name} is over the {max_pixels():,}-pixel limit (PIL.Image.MAX_IMAGE_PIXELS) that guards against "
            f"decompression bombs: {e}"
        ) from None
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
