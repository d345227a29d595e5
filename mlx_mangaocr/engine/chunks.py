"""The one chunker: images to preprocessed pixel chunks of at most ``batch_size``, read from any
iterable only as the decoder asks for them. Used by the OCR API, the page reader's crops and the
file pipeline, which keeps an image that fails out of its chunk and reports it on its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from ..core.errors import InvalidImageError


def pixel_chunks(
    images: Iterable[Any],
    batch_size: int,
    preprocess: Callable[[Any], np.ndarray],
    on_image: Callable[[int, InvalidImageError | None], None] | None = None,
) -> Iterator[np.ndarray]:
    """Chunks (B <= ``batch_size``, H, W, 3) of ``preprocess(image)``. Without ``on_image`` an
    image that cannot be read raises ``InvalidImageError``; with it, every image is reported in
    order as ``on_image(index, None)`` (in the chunk) or ``on_image(index, error)`` (left out)."""
    chunk: list[np.ndarray] = []
    for index, image in enumerate(images):
        try:
            pixels = preprocess(image)
        except InvalidImageError as e:
            if on_image is None:
                raise
            on_image(index, e)
            continue
        if on_image is not None:
            on_image(index, None)
        chunk.append(pixels)
        if len(chunk) == batch_size:
            yield np.stack(chunk)
            chunk = []
    if chunk:
        yield np.stack(chunk)
