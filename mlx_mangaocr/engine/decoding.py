"""Decoding a stream of preprocessed images with either scheduler, in input order: the loop that
feeds the continuous decoder as rows come free, or runs static batches one after another."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator

import mlx.core as mx
import numpy as np

from ..models.ocr.config import GenerationConfig
from ..models.ocr.model import MangaOcrModel
from .scheduler import ContinuousDecoder
from .search import DecodeStats
from .steppers import generate, mean_token_probability


def decode_chunks(
    model: MangaOcrModel,
    chunks: Iterable[np.ndarray],
    settings: GenerationConfig,
    batch_size: int,
    scheduler: str,
    compile_step: bool = True,
    stats: DecodeStats | None = None,
    confidence: bool = False,
    running: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    to_device: Callable[[np.ndarray], mx.array] = mx.array,
) -> Iterator[tuple[list[int], float | None]]:
    """(ids, confidence or None) for every image of ``chunks`` (preprocessed pixels, at most
    ``batch_size`` images each), in input order, decoded by ``scheduler`` ("continuous" or
    "static"). Chunks are read only as the decoder has room. Every MLX call runs inside
    ``running()`` (the caller's lock and device); ``to_device`` makes a chunk an array."""
    stats = stats if stats is not None else DecodeStats()
    if scheduler == "static":
        for pixels in chunks:
            with running():
                hidden = model.encode(to_device(pixels))
                rows = generate(model, hidden, settings, compile_step, stats)
                scores = [None] * len(rows)
                if confidence:
                    scores = mean_token_probability(model, model.cross_kv(hidden), rows)
            yield from zip(rows, scores, strict=True)
        return
    decoder = ContinuousDecoder(model, settings, batch_size, compile_step, confidence, stats)
    chunks, fed, done, next_out = iter(chunks), 0, {}, 0
    while True:
        while decoder.wants_input():
            pixels = next(chunks, None)
            if pixels is None:
                decoder.close()
                break
            with running():
                decoder.feed(list(range(fed, fed + len(pixels))), to_device(pixels))
            fed += len(pixels)
        with running():
            finished = decoder.step()
        if finished is None:
            return
        for index, ids, score in finished:
            done[index] = (ids, score)
        while next_out in done:  # in input order
            yield done.pop(next_out)
            next_out += 1
