"""A contact sheet: samples in a grid, each with its label beneath, to check the rendering by eye."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .fonts import FontFace

CELL, COLUMNS, LABEL_SIZE, LABEL_LINES = 220, 8, 14, 3


def contact_sheet(out: Path, records: list[dict], face: FontFace) -> Image.Image:
    """A grid of the samples ``records`` name (their images under ``out``), each fitted in a
    ``CELL`` square with its label (and its furigana, marked as such) beneath in ``face``; returns
    the sheet (grayscale)."""
    font = ImageFont.truetype(face.path, LABEL_SIZE, index=face.index)
    rows = max(1, -(-len(records) // COLUMNS))
    line_h = LABEL_SIZE + 3
    cell_h = CELL + LABEL_LINES * line_h + 8
    sheet = Image.new("L", (COLUMNS * CELL, rows * cell_h), 255)
    draw = ImageDraw.Draw(sheet)
    for i, record in enumerate(records):
        x, y = (i % COLUMNS) * CELL, (i // COLUMNS) * cell_h
        with Image.open(out / record["image"]) as im:
            thumb = im.convert("L")
        thumb.thumbnail((CELL - 8, CELL - 8), Image.Resampling.LANCZOS)
        sheet.paste(thumb, (x + (CELL - thumb.width) // 2, y + 4 + (CELL - 8 - thumb.height) // 2))
        draw.rectangle((x, y, x + CELL - 1, y + cell_h - 1), outline=160)
        text = f"{i}{'縦' if record['vertical'] else '横'}: {record['text']}"
        if record.get("furigana"):
            text += f" [ruby: {' '.join(record['furigana'])}]"
        for k, part in enumerate(_wrap(draw, text, font, CELL - 8)[:LABEL_LINES]):
            draw.text((x + 4, y + CELL + k * line_h), part, font=font, fill=0)
    return sheet


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    lines, line = [], ""
    for c in text:
        if draw.textlength(line + c, font=font) > width:
            lines.append(line)
            line = ""
        line += c
    return [*lines, line] if line else lines
