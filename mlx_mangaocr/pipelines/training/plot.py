"""``training.png``: training loss and validation CER against steps, drawn with Pillow (no
plotting library needed)."""

from __future__ import annotations

import io
import math

from PIL import Image, ImageDraw

WIDTH, HEIGHT, MARGIN = 720, 300, 48


def _panel(draw: ImageDraw.ImageDraw, top: int, title: str, points: list[tuple[float, float]], colour: str,
           last_step: float) -> None:  # fmt: skip
    left, right, bottom = MARGIN + 16, WIDTH - 16, top + HEIGHT - MARGIN
    draw.rectangle([left, top + 20, right, bottom], outline="#888888")
    draw.text((left, top + 4), title, fill="black")
    if not points:
        draw.text((left + 8, top + 28), "no values yet", fill="#888888")
        return
    values = [v for _, v in points]
    low, high = min(values), max(values)
    if math.isclose(low, high):
        low, high = low - 0.5, high + 0.5
    span_x = max(last_step, 1.0)

    def at(step: float, value: float) -> tuple[float, float]:
        x = left + (right - left) * step / span_x
        y = bottom - (bottom - top - 20) * (value - low) / (high - low)
        return x, y

    for value in (low, (low + high) / 2, high):
        _, y = at(0, value)
        draw.text((2, y - 6), f"{value:.3g}", fill="#444444")
    draw.text((right - 60, bottom + 4), f"step {int(last_step)}", fill="#444444")
    coords = [at(s, v) for s, v in points]
    if len(coords) > 1:
        draw.line(coords, fill=colour, width=2)
    for x, y in coords[-1:] if len(coords) > 1 else coords:
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)


def render(metrics: list[dict]) -> bytes:
    """The PNG bytes of the plot of ``metrics`` (the lines of metrics.jsonl)."""
    loss = [(m["step"], m["loss"]) for m in metrics if "loss" in m and math.isfinite(m["loss"])]
    cer = [(m["step"], m["val_cer"]) for m in metrics if m.get("val_cer") is not None]
    last = max([s for s, _ in loss + cer], default=1)
    image = Image.new("RGB", (WIDTH, 2 * HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    _panel(draw, 0, "training loss", loss, "#1f77b4", last)
    _panel(draw, HEIGHT, "validation CER", cer, "#d62728", last)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
