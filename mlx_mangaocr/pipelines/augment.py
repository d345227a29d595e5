"""manga-ocr's training augmentation, with Pillow and NumPy: per sample, none (18%), a "medium"
mix (80%) or a "heavy" one (2%) of rotation, perspective, inversion, downscaling, blur, sharpening,
brightness and contrast, Gaussian noise and JPEG artefacts, with upstream's probabilities and
ranges (albumentations in ``manga_ocr_dev/training/dataset.py``). Training applies it when it
loads a crop; ``synth`` writes clean images.

Every draw comes from the ``rng`` passed in, so a given generator state gives the same image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter, ImageOps

MIX_P = {"none": 0.18, "medium": 0.8, "heavy": 0.02}
# (transform, probability, strength) in upstream's order, for each mix
MIXES = {
    "medium": [("rotate", 0.2, 5.0), ("perspective", 0.2, 0.05), ("invert", 0.05, None),
               ("downscale", 0.1, (0.25, 0.5)), ("blur", 0.2, (3, 7)), ("sharpen", 0.2, None),
               ("brightness_contrast", 0.5, 0.2), ("noise", 0.3, (50.0, 200.0)), ("jpeg", 0.1, (0, 30))],
    "heavy": [("rotate", 0.2, 10.0), ("perspective", 0.2, 0.05), ("invert", 0.05, None),
              ("downscale", 0.1, (0.1, 0.2)), ("blur", 0.5, (4, 9)), ("sharpen", 0.5, None),
              ("brightness_contrast", 1.0, 0.8), ("noise", 0.3, (1000.0, 10000.0)), ("jpeg", 0.5, (0, 10))],
}  # fmt: skip


def augment(image: Image.Image, rng: np.random.Generator, policy: str = "manga-ocr") -> Image.Image:
    """``image`` (grayscale, mode L) augmented as manga-ocr trained: a mix drawn from ``MIX_P``,
    then each of its transforms with its probability. Returns a new L image of the same size."""
    if policy != "manga-ocr":
        raise ValueError(f"augmentation policy {policy!r}: only 'manga-ocr' is known")
    image = image.convert("L")
    mix = str(rng.choice(list(MIX_P), p=list(MIX_P.values())))
    for name, p, strength in MIXES.get(mix, []):
        if rng.random() < p:
            image = TRANSFORMS[name](image, rng, strength)
    return image


def _edge_fill(image: Image.Image) -> int:
    # upstream replicates the border; the border's median grey is the closest single fill
    a = np.asarray(image)
    return int(np.median(np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])))


def rotate(image: Image.Image, rng: np.random.Generator, limit: float = 5.0) -> Image.Image:
    """Turned by up to ``limit`` degrees either way, about the centre, same size."""
    angle = float(rng.uniform(-limit, limit))
    return image.rotate(angle, Image.Resampling.BILINEAR, fillcolor=_edge_fill(image))


def perspective(image: Image.Image, rng: np.random.Generator, scale: float = 0.05) -> Image.Image:
    """Each corner moved inward by 1%-``scale`` of the size, the view stretched back to the full size."""
    w, h = image.size
    jitter = rng.uniform(0.01, scale, size=(4, 2)) * (w, h)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], float) + jitter * [[1, 1], [-1, 1], [-1, -1], [1, -1]]
    dst = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    # coefficients mapping output (dst) points to input (src) points, as Image.transform wants
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    coeffs = np.linalg.solve(np.array(rows), np.array(rhs))
    return image.transform(image.size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR,
                           fillcolor=_edge_fill(image))  # fmt: skip


def invert(image: Image.Image, rng: np.random.Generator, _=None) -> Image.Image:
    """Black for white."""
    return ImageOps.invert(image)


def downscale(image: Image.Image, rng: np.random.Generator, scale: tuple[float, float] = (0.25, 0.5)) -> Image.Image:
    """Reduced to ``scale`` of its size and enlarged back (bilinear or nearest, as upstream's two)."""
    s = float(rng.uniform(*scale))
    method = Image.Resampling.BILINEAR if rng.random() < 0.5 else Image.Resampling.NEAREST
    small = image.resize((max(1, round(image.width * s)), max(1, round(image.height * s))), method)
    return small.resize(image.size, method)


def blur(image: Image.Image, rng: np.random.Generator, kernel: tuple[int, int] = (3, 7)) -> Image.Image:
    """A box blur with an odd kernel of ``kernel`` pixels (upstream's ``Blur``)."""
    k = int(rng.integers(kernel[0], kernel[1] + 1)) | 1
    return image.filter(ImageFilter.BoxBlur((k - 1) / 2))


def sharpen(image: Image.Image, rng: np.random.Generator, _=None) -> Image.Image:
    """Blended with its sharpened self: alpha 0.2-0.5, lightness 0.5-1.0 (upstream's ``Sharpen``)."""
    alpha, lightness = float(rng.uniform(0.2, 0.5)), float(rng.uniform(0.5, 1.0))
    kernel = np.array([[-1, -1, -1], [-1, 8 + lightness, -1], [-1, -1, -1]], float)
    identity = np.zeros((3, 3))
    identity[1, 1] = 1
    k = (1 - alpha) * identity + alpha * kernel
    return image.filter(ImageFilter.Kernel((3, 3), k.ravel().tolist(), scale=float(k.sum())))


def brightness_contrast(image: Image.Image, rng: np.random.Generator, limit: float = 0.2) -> Image.Image:
    """Contrast times 1 +- ``limit``, brightness +- ``limit`` x 255."""
    alpha = 1 + float(rng.uniform(-limit, limit))
    beta = float(rng.uniform(-limit, limit)) * 255
    a = np.asarray(image, np.float32) * alpha + beta
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def noise(image: Image.Image, rng: np.random.Generator, variance: tuple[float, float] = (50.0, 200.0)) -> Image.Image:
    """Gaussian noise of variance drawn from ``variance`` (grey levels squared)."""
    std = float(np.sqrt(rng.uniform(*variance)))
    a = np.asarray(image, np.float32) + rng.normal(0, std, size=(image.height, image.width)).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def jpeg(image: Image.Image, rng: np.random.Generator, quality: tuple[int, int] = (0, 30)) -> Image.Image:
    """Saved as JPEG at a quality drawn from ``quality`` (Pillow's lowest is 1) and read back."""
    q = max(1, int(rng.integers(quality[0], quality[1] + 1)))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=q)
    buffer.seek(0)
    with Image.open(buffer) as im:
        return im.convert("L")


TRANSFORMS = {"rotate": rotate, "perspective": perspective, "invert": invert, "downscale": downscale, "blur": blur,
              "sharpen": sharpen, "brightness_contrast": brightness_contrast, "noise": noise, "jpeg": jpeg}  # fmt: skip
