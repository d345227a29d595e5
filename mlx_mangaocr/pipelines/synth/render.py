"""Text to an ink mask, glyph by glyph: horizontal lines top to bottom, or vertical columns right
to left with the vertical forms of punctuation, brackets and the long-vowel mark, tate-chū-yoko
cells, sideways Latin, and furigana beside their kanji.

Vertical forms come from the font's own ``vert`` substitutions through Pillow's complex layout
(libraqm) when it is there. Where it is not, or a font has no vertical form for a character, the
horizontal glyph is turned (brackets, ー, …) or moved to the upper right of its cell (。、 and small
kana), so vertical text renders right either way."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .fonts import FontCache, FontFace
from .layout import Segment

# characters turned a quarter clockwise in vertical text when the font gives no vertical form
TURNED = set("ー―‐－～〜…‥「」『』（）［］【】〔〕｛｝〈〉《》＜＞＝：；→←")
PUNCT_MOVED = set("。、，．")  # to the upper right of the cell
SMALL_KANA = set("ぁぃぅぇぉっゃゅょゎゕゖァィゥェォッャュョヮヵヶ")
RUBY_SCALE = 0.5
RUBY_GAP = 0.06  # between a column (line) and its furigana, in ems


@dataclass(frozen=True)
class Glyph:
    """An ink mask whose top-left lies at (``dx``, ``dy``) from its cell's top-left; ``advance``
    is the cell's length along a horizontal line (1 em for a full-width character)."""

    mask: np.ndarray
    dx: int
    dy: int
    advance: float


@dataclass(frozen=True)
class Style:
    """How a sample's text is set."""

    size: int = 48  # the em, in pixels (upstream renders at 48 px)
    vertical: bool = True
    upright: bool = True  # vertical: ASCII runs not set as tate-chū-yoko stand upright (else sideways)
    line_gap: float = 0.5  # between lines, in ems
    letter_gap: float = 0.0  # between characters, in ems


class TextRenderer:
    """Renders lines of segments in one face to an ink mask (uint8, 255 = ink). Glyphs are cached
    per thread; ``vert_feature=False`` uses the turned and moved forms even where raqm is there."""

    def __init__(self, fonts: FontCache, raqm: bool, vert_feature: bool = True):
        self.fonts, self.raqm, self.vert_feature = fonts, raqm, vert_feature and raqm
        self._local = threading.local()

    def _cache(self) -> dict:
        cache = getattr(self._local, "glyphs", None)
        if cache is None:
            cache = self._local.glyphs = {}
        return cache

    def _baseline(self, face: FontFace, size: int) -> float:
        # the em box's centre is the centre of 田's ink: fonts disagree on ascent, not on that
        key = ("baseline", face, size)
        cache = self._cache()
        if key not in cache:
            _, top, _, bottom = self.fonts.get(face, size, False).getbbox("田", anchor="ls")
            cache[key] = size / 2 - (top + bottom) / 2
        return cache[key]

    def _draw(self, face: FontFace, size: int, text: str, vert: bool) -> tuple[np.ndarray, int, float]:
        font = self.fonts.get(face, size, self.raqm)
        kwargs = {"features": ["vert"]} if vert else {}
        advance = font.getlength(text, **kwargs)
        pad = size // 2
        image = Image.new("L", (int(np.ceil(advance)) + 2 * pad, size + 2 * pad))
        ImageDraw.Draw(image).text((pad, pad + self._baseline(face, size)), text, font=font, fill=255, anchor="ls",
                                   **kwargs)  # fmt: skip
        return np.asarray(image), pad, advance

    def glyph(self, face: FontFace, size: int, char: str, vertical: bool) -> Glyph:
        """One character's glyph, in its vertical form when ``vertical``."""
        key = (face, size, char, vertical)
        cache = self._cache()
        if key in cache:
            return cache[key]
        mask, pad, advance = self._draw(face, size, char, False)
        if vertical and (char in TURNED or char in PUNCT_MOVED or char in SMALL_KANA):
            turned = None
            if self.vert_feature:
                vert, _, _ = self._draw(face, size, char, True)
                if vert.shape == mask.shape and not np.array_equal(vert, mask):
                    turned = vert  # the font's own vertical form
            if turned is None:
                turned = _vertical_form(mask, char, size, pad)
            mask = turned
        cache[key] = glyph = Glyph(mask, -pad, -pad, advance)
        return glyph

    def run(self, face: FontFace, size: int, text: str) -> Glyph:
        """A horizontal run (tate-chū-yoko, sideways Latin), drawn as one piece of text."""
        key = (face, size, text, "run")
        cache = self._cache()
        if key not in cache:
            mask, pad, advance = self._draw(face, size, text, False)
            cache[key] = Glyph(mask, -pad, -pad, advance)
        return cache[key]

    def render(self, face: FontFace, lines: list[list[Segment]], style: Style) -> np.ndarray:
        """The ink mask of ``lines``, cropped to the ink (uint8, 255 = ink)."""
        placed: list[tuple[np.ndarray, int, int]] = []
        size, ruby_size = style.size, max(8, int(style.size * RUBY_SCALE))
        ruby_band = ruby_size + RUBY_GAP * size
        cursor = 0.0  # vertical: right edge of the next column, going left; horizontal: top of the next line
        for line in lines:
            has_ruby = any(s.kind == "ruby" for s in line)
            band = ruby_band if has_ruby else 0.0
            if style.vertical:
                x0 = cursor - band - size  # the column's left edge; furigana go on its right
                self._column(face, line, style, x0, ruby_size, placed)
                cursor = x0 - style.line_gap * size
            else:
                y0 = cursor + band  # furigana go above the line
                self._row(face, line, style, y0, ruby_size, placed)
                cursor = y0 + size + style.line_gap * size
        return _composite(placed)

    def _column(self, face, line, style: Style, x0: float, ruby_size: int, placed: list) -> None:
        size, y = style.size, 0.0
        centre = x0 + size / 2
        step = size * (1 + style.letter_gap)

        def put(g: Glyph, cx: float, top: float, width: float) -> None:
            placed.append((g.mask, round(cx - width / 2) + g.dx, round(top) + g.dy))

        for seg in line:
            if seg.kind == "char" or (seg.kind == "latin" and style.upright):
                for c in seg.text:
                    g = self.glyph(face, size, c, True)
                    put(g, centre, y, g.advance)
                    y += step
            elif seg.kind == "tcy":
                g = self.run(face, size, seg.text)
                mask = g.mask
                if g.advance > size:  # squeezed into one em, as text-combine-upright does
                    pad = -g.dx
                    width = max(1, round(mask.shape[1] * size / g.advance))
                    mask = np.asarray(Image.fromarray(mask).resize((width, mask.shape[0]), Image.Resampling.BILINEAR))
                    g = Glyph(mask, -round(pad * size / g.advance), g.dy, float(size))
                put(g, centre, y, g.advance)
                y += step
            elif seg.kind == "latin":  # sideways: the horizontal run turned a quarter clockwise
                g = self.run(face, size, seg.text)
                mask = np.rot90(g.mask, k=-1)
                # after turning, the run's start is at the top and its baseline side faces left
                placed.append((mask, round(centre - size / 2 + g.dy), round(y) + g.dx))
                y += g.advance + style.letter_gap * size
            else:  # ruby
                n, rs = len(seg.text), ruby_size
                span = max(n * step, len(seg.ruby) * rs)
                base_gap = (span - n * step) / n
                for i, c in enumerate(seg.text):
                    g = self.glyph(face, size, c, True)
                    put(g, centre, y + base_gap / 2 + i * (step + base_gap), g.advance)
                ruby_gap = (span - len(seg.ruby) * rs) / len(seg.ruby)
                ruby_centre = x0 + size + RUBY_GAP * size + rs / 2
                for j, c in enumerate(seg.ruby):
                    g = self.glyph(face, rs, c, True)
                    put(g, ruby_centre, y + ruby_gap / 2 + j * (rs + ruby_gap), g.advance)
                y += span

    def _row(self, face, line, style: Style, y0: float, ruby_size: int, placed: list) -> None:
        size, x = style.size, 0.0
        extra = style.letter_gap * size
        for seg in line:
            if seg.kind != "ruby":
                for c in seg.text:
                    g = self.glyph(face, size, c, False)
                    placed.append((g.mask, round(x) + g.dx, round(y0) + g.dy))
                    x += g.advance + extra
                continue
            base = [self.glyph(face, size, c, False) for c in seg.text]
            ruby = [self.glyph(face, ruby_size, c, False) for c in seg.ruby]
            base_len = sum(g.advance + extra for g in base)
            ruby_len = sum(g.advance for g in ruby)
            span = max(base_len, ruby_len)
            gap = (span - base_len) / len(base)
            bx = x + gap / 2
            for g in base:
                placed.append((g.mask, round(bx) + g.dx, round(y0) + g.dy))
                bx += g.advance + extra + gap
            gap = (span - ruby_len) / len(ruby)
            rx, ry = x + gap / 2, y0 - RUBY_GAP * size - ruby_size
            for g in ruby:
                placed.append((g.mask, round(rx) + g.dx, round(ry) + g.dy))
                rx += g.advance + gap
            x += span


def _vertical_form(mask: np.ndarray, char: str, size: int, pad: int) -> np.ndarray:
    """The horizontal glyph made vertical: turned a quarter clockwise about its em box's centre,
    or moved to the upper right (punctuation, a little for small kana)."""
    h, w = mask.shape
    if char in TURNED:
        side = max(h, w)
        square = np.zeros((side, side), np.uint8)
        square[:h, :w] = mask  # the em box (pad..pad+size) stays centred when w == h
        return np.ascontiguousarray(np.rot90(square, k=-1))[:h, :w]
    shift = round((0.62 if char in PUNCT_MOVED else 0.08) * size)
    out = np.zeros_like(mask)
    out[: h - shift, shift:] = mask[shift:, : w - shift]
    return out


def _composite(placed: list[tuple[np.ndarray, int, int]]) -> np.ndarray:
    """Masks at their positions, merged by maximum, cropped to the ink."""
    if not placed:
        return np.zeros((1, 1), np.uint8)
    x0 = min(x for _, x, _ in placed)
    y0 = min(y for _, _, y in placed)
    x1 = max(x + m.shape[1] for m, x, _ in placed)
    y1 = max(y + m.shape[0] for m, _, y in placed)
    canvas = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for m, x, y in placed:
        region = canvas[y - y0 : y - y0 + m.shape[0], x - x0 : x - x0 + m.shape[1]]
        np.maximum(region, m, out=region)
    rows, cols = np.nonzero(canvas.any(axis=1))[0], np.nonzero(canvas.any(axis=0))[0]
    if len(rows) == 0:
        return np.zeros((1, 1), np.uint8)
    return canvas[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
