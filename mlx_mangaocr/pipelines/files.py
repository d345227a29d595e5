"""OCR of image files (or any image inputs) with per-image errors: what the command line, watch
and clipboard run. An image that cannot be read is reported as its own record and the others go
on; records come in input order."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..core.names import display_name
from ..engine.chunks import pixel_chunks


def recognize_files(processor, images: list, batch_size: int, decoding: dict, emit: Callable[[dict], None],
                    names: list[str] | None = None) -> None:  # fmt: skip
    """OCR ``images`` (paths, or any image inputs reported under ``names``), ``batch_size``
    decoding together. ``emit`` gets one record per image, in input order: ``path``, ``text``,
    ``confidence`` (mean token probability) and ``seconds`` (the average time per image so far),
    or ``path`` and ``error``."""
    names = names or [display_name(p) if isinstance(p, (str, Path)) else str(p) for p in images]
    pending: deque[tuple[str, str | None]] = deque()  # (name, error) in input order, not yet emitted

    def seen(index: int, error) -> None:
        pending.append((names[index], None if error is None else str(error)))

    def flush_errors() -> None:
        while pending and pending[0][1] is not None:
            name, error = pending.popleft()
            emit({"path": name, "error": error})

    chunks = pixel_chunks(images, batch_size, processor.image_processor, seen)
    began, done = time.perf_counter(), 0
    for result in processor.recognize_stream(chunks, batch_size, **decoding):
        flush_errors()
        name, _ = pending.popleft()
        done += 1
        emit({
            "path": name,
            "text": result.text,
            "confidence": round(result.confidence, 4),
            "seconds": round((time.perf_counter() - began) / done, 4),
        })  # fmt: skip
    flush_errors()


def recognize_file(processor, image, name: str, decoding: dict) -> dict:
    """One image's record, as ``recognize_files`` gives it (for watch and clipboard)."""
    records: list[dict] = []
    recognize_files(processor, [image], 1, decoding, records.append, [name])
    return records[0]
