"""What lies behind the text: a region cut from a page image (``--backgrounds DIR``), or a drawn
one (plain, gradient, screentone dots, lines, soft noise); and speech bubbles (rounded rectangles
or ellipses, outlined, slightly warped). All arrays are float32 grey levels, 0 black to 255 white."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from ...core.images import image_files
from .charsets import SynthError

DRAWN = ["plain", "gradient", "screentone", "lines", "noise"]
DRAWN_P = [0.35, 0.2, 0.2, 0.15, 0.1]


def background_files(folder: str) -> list[Path]:
    """The image files in ``folder`` (``--backgrounds``), sorted. Raises ``SynthError`` when there are none."""
    path = Path(folder)
    if not path.is_dir():
        raise SynthError(f"--backgrounds {folder}: not a folder")
    files = sorted(image_files(path))
    if not files:
        raise SynthError(f"--backgrounds {folder}: no image files there")
    for file in files:  # each one's header now, so that a bad file stops the run before it starts
        try:
            with Image.open(file) as im:
                size = im.size
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise SynthError(f"--backgrounds: cannot read {file}: {e}") from None
        if Image.MAX_IMAGE_PIXELS and size[0] * size[1] > Image.MAX_IMAGE_PIXELS:
            raise SynthError(f"--backgrounds: {file} is {size[0]}x{size[1]}, over the {Image.MAX_IMAGE_PIXELS:,}-pixel "
                             "limit (PIL.Image.MAX_IMAGE_PIXELS) that guards against decompression bombs")  # fmt: skip
    return files


def page_background(path: Path, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A region of the page image ``path`` with the crop's aspect ratio, resized to (height, width),
    flipped or inverted at random. Raises ``SynthError`` naming a file that cannot be read."""
    try:
        with Image.open(path) as im:
            im.draft("L", (width * 2, height * 2))  # JPEG: decode at a reduced scale, much faster
            page = ImageOps.exif_transpose(im).convert("L")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise SynthError(f"--backgrounds: cannot read {path}: {e}") from None
    pw, ph = page.size
    aspect = width / height
    cw = min(pw, ph * aspect) * rng.uniform(0.3, 1.0)
    ch = cw / aspect
    x, y = rng.uniform(0, pw - cw), rng.uniform(0, ph - ch)
    region = page.resize((width, height), Image.Resampling.BILINEAR, box=(x, y, x + cw, y + ch))
    out = np.asarray(region, np.float32)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    if rng.random() < 0.5:
        out = 255 - out
    return np.ascontiguousarray(out)


def drawn_background(height: int, width: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """(background, kind): a drawn background of (height, width) and which of ``DRAWN`` it is."""
    kind = str(rng.choice(DRAWN, p=DRAWN_P))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    if kind == "plain":
        out = np.full((height, width), rng.uniform(180, 255), np.float32)
    elif kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(angle) + yy * np.sin(angle)
        t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
        a, b = rng.uniform(60, 255, size=2)
        out = a + (b - a) * t
    elif kind == "screentone":  # dots on a turned grid, as printed manga tones
        pitch = rng.uniform(4, 12)
        angle = np.deg2rad(rng.choice([0, 45, rng.uniform(0, 90)]))
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        du = (u % pitch) - pitch / 2
        dv = (v % pitch) - pitch / 2
        radius = pitch * rng.uniform(0.15, 0.45)
        dots = np.clip(radius + 0.5 - np.sqrt(du * du + dv * dv), 0, 1)  # antialiased edge
        paper = rng.uniform(220, 255)
        out = paper - dots * (paper - rng.uniform(0, 80))
    elif kind == "lines":  # hatching or parallel speed lines
        pitch = rng.uniform(3, 14)
        angle = rng.uniform(0, np.pi)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        width_ = pitch * rng.uniform(0.1, 0.4)
        line = np.clip(width_ / 2 + 0.5 - np.abs((u % pitch) - pitch / 2), 0, 1)
        paper = rng.uniform(210, 255)
        out = paper - line * (paper - rng.uniform(0, 100))
    else:  # soft noise: random levels on a coarse grid, smoothly enlarged
        cells = rng.uniform(0, 255, size=(int(rng.integers(2, 8)), int(rng.integers(2, 8)))).astype(np.float32)
        out = np.asarray(Image.fromarray(cells, "F").resize((width, height), Image.Resampling.BICUBIC))
    return np.clip(out, 0, 255).astype(np.float32), kind


def lower_contrast(bg: np.ndarray, rng: np.random.Generator, light: bool) -> np.ndarray:
    """``bg`` with its contrast cut to 20-70% and its mean moved to the light (``light``) or dark
    end, so that text without an outline stays readable on it."""
    mean = float(bg.mean())
    target = rng.uniform(190, 245) if light else rng.uniform(10, 70)
    return np.clip(target + (bg - mean) * rng.uniform(0.2, 0.7), 0, 255).astype(np.float32)


def bubble_bounds(box: tuple[float, float, float, float], shape: str, roundness: float
                  ) -> tuple[tuple[float, float, float, float], float]:  # fmt: skip
    """(outer box, corner radius) of a bubble of ``shape`` ("rounded" or "ellipse") that encloses
    ``box`` (x0, y0, x1, y1): an ellipse through the box's corners has semi-axes sqrt(2) times half
    the box; a rounded rectangle with corner radius r (``roundness`` of half the short side) grows
    by 0.3 r so that its corners clear the box's."""
    x0, y0, x1, y1 = box
    if shape == "ellipse":
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2 * 1.42, (y1 - y0) / 2 * 1.42
        return (cx - rx, cy - ry, cx + rx, cy + ry), 0.0
    radius = roundness * min(x1 - x0, y1 - y0) / 2
    grow = 0.3 * radius
    return (x0 - grow, y0 - grow, x1 + grow, y1 + grow), radius


def bubble(height: int, width: int, outer: tuple[float, float, float, float], shape: str, radius: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """(fill, outline): masks in [0, 1] of a speech bubble of ``shape`` ("rounded" or "ellipse")
    filling ``outer`` (from ``bubble_bounds``) on a (height, width) crop, its outline 1-3 px, warped
    a little with a smooth random mesh."""
    x0, y0, x1, y1 = outer
    scale = 2  # drawn at twice the size, then reduced: smooth edges
    fill = Image.new("L", (width * scale, height * scale))
    outline = Image.new("L", (width * scale, height * scale))
    xy = [x0 * scale, y0 * scale, x1 * scale, y1 * scale]
    thickness = int(rng.choice([1, 2, 3])) * scale
    if shape == "ellipse":
        ImageDraw.Draw(fill).ellipse(xy, fill=255)
        ImageDraw.Draw(outline).ellipse(xy, outline=255, width=thickness)
    else:
        ImageDraw.Draw(fill).rounded_rectangle(xy, radius * scale, fill=255)
        ImageDraw.Draw(outline).rounded_rectangle(xy, radius * scale, outline=255, width=thickness)
    if rng.random() < 0.8:
        mesh = _warp_mesh(width * scale, height * scale, rng)
        fill = fill.transform(fill.size, Image.Transform.MESH, mesh, Image.Resampling.BILINEAR)
        outline = outline.transform(outline.size, Image.Transform.MESH, mesh, Image.Resampling.BILINEAR)
    fill = fill.resize((width, height), Image.Resampling.BOX)
    outline = outline.resize((width, height), Image.Resampling.BOX).filter(ImageFilter.SMOOTH)
    return np.asarray(fill, np.float32) / 255, np.asarray(outline, np.float32) / 255


def _warp_mesh(width: int, height: int, rng: np.random.Generator, cells: int = 4) -> list:
    """A MESH transform: a grid of cells whose source corners are moved by up to 3% of the size."""
    amount = 0.03 * min(width, height)
    xs = np.linspace(0, width, cells + 1)
    ys = np.linspace(0, height, cells + 1)
    jitter = rng.uniform(-amount, amount, size=(cells + 1, cells + 1, 2))
    jitter[0, :, 1] = jitter[-1, :, 1] = jitter[:, 0, 0] = jitter[:, -1, 0] = 0  # the border stays put
    src = np.stack(np.meshgrid(xs, ys), axis=-1) + jitter  # [row][col] = (x, y)
    mesh = []
    for r in range(cells):
        for c in range(cells):
            box = (int(xs[c]), int(ys[r]), int(xs[c + 1]), int(ys[r + 1]))
            quad = (*src[r, c], *src[r + 1, c], *src[r + 1, c + 1], *src[r, c + 1])  # nw, sw, se, ne
            mesh.append((box, tuple(float(v) for v in quad)))
    return mesh
