"""Continuous batching: keep the decoder's batch full when output lengths are ragged.

A static batch decodes until its longest row ends, so with OCR's lengths (most crops a few tokens,
a few to ``max_length``) most of its row-steps are padding. Here a unit of rows (one row per image
in greedy decoding, an image's ``num_beams`` rows in beam search) starts the next image as soon as
its image is done: the image's cross-attention keys and values go into the unit's rows and its
position restarts at 0 in the preallocated cache while the other rows go on (``RowStepper``, one
position per row). Images are encoded in micro-batches as units come free. When the input has run
out and half the units are idle, the batch shrinks to the next smaller power of two, so that a
last long image does not drag a full batch of idle rows. ``mx.compile`` traces the step once per
batch shape.

A unit's tokens depend only on its own logits, and it stops by the rule for a batch of one, so
every image gets exactly the ids it gets decoded alone, whatever it shares the batch with.
"""

from __future__ import annotations

from collections import deque

import mlx.core as mx
import numpy as np

from ..models.ocr.config import GenerationConfig
from ..models.ocr.kv_cache import CrossKV
from ..models.ocr.model import MangaOcrModel
from .search import DecodeStats, make_search
from .steppers import RowStepper, mean_token_probability

SCHEDULERS = ("continuous", "static")


def check_scheduler(scheduler: str) -> str:
    if scheduler not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
    return scheduler


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    return batch_size


class ContinuousDecoder:
    """Decodes images fed in micro-batches with ``batch_size`` units kept busy.

    The caller alternates ``feed`` (while ``wants_input()``), ``close`` once the input has run out,
    and ``step``, which runs one decoder step and returns the images finished in it as
    ``(index, ids, confidence)``; ``step`` returns None when every image fed has been returned.
    ``confidence``: also give each image's mean token probability (else None).
    """

    def __init__(
        self,
        model: MangaOcrModel,
        gen: GenerationConfig,
        batch_size: int,
        compiled: bool = True,
        confidence: bool = False,
        stats: DecodeStats | None = None,
    ):
        check_batch_size(batch_size)
        self.model, self.gen, self.compiled, self.confidence = model, gen, compiled, confidence
        self.stats = stats if stats is not None else DecodeStats()
        self.units = batch_size
        self.beams = gen.num_beams
        self.search = make_search(gen, batch_size)
        self.stepper: RowStepper | None = None
        self.owner = np.full(batch_size, -1, dtype=np.int64)  # the image in each unit; -1: idle
        self.waiting: deque[tuple[int, list[CrossKV]]] = deque()  # encoded, not yet in a unit
        self.closed = False
        self.pad = gen.pad_token_id if gen.pad_token_id is not None else gen.eos_token_id

    def wants_input(self) -> bool:
        """More images would fill units that are free now."""
        return not self.closed and len(self.waiting) < int(np.sum(self.owner < 0))

    def feed(self, indices: list[int], pixels: mx.array) -> None:
        """Encode a micro-batch of preprocessed images (B, H, W, 3), known by ``indices``."""
        cross = self.model.cross_kv(self.model.encode(pixels))
        mx.eval(cross)
        for j, index in enumerate(indices):
            self.waiting.append((index, [CrossKV(c.keys[j : j + 1], c.values[j : j + 1]) for c in cross]))

    def close(self) -> None:
        """No more input: the batch may shrink as its units come free."""
        self.closed = True

    def _rows(self, units: np.ndarray) -> np.ndarray:
        return (units[:, None] * self.beams + np.arange(self.beams)).reshape(-1)

    def _admit(self) -> None:
        free = np.flatnonzero(self.owner < 0)[: len(self.waiting)]
        if not len(free):
            return
        entries = [self.waiting.popleft() for _ in free]
        layers = range(len(entries[0][1]))
        cross = [
            CrossKV(
                mx.repeat(mx.concatenate([e[1][i].keys for e in entries]), self.beams, axis=0),
                mx.repeat(mx.concatenate([e[1][i].values for e in entries]), self.beams, axis=0),
            )
            for i in layers
        ]
        if self.stepper is None:
            dtype = cross[0].keys.dtype
            self.stepper = RowStepper(self.model, self.gen, self.units * self.beams, dtype, self.compiled)
        self.stepper.admit(self._rows(free), cross)
        for unit, (index, _) in zip(free, entries, strict=True):
            self.owner[unit] = index
            self.search.start(unit)

    def _shrink(self, active: np.ndarray) -> None:
        """Fewer units: the smallest power of two that holds the busy ones."""
        size = 1 << (len(active) - 1).bit_length()
        if size >= self.units:
            return
        idle = np.flatnonzero(self.owner < 0)[: size - len(active)]
        keep = np.concatenate([active, idle])
        self.stepper.take(self._rows(keep))
        self.search.take(keep)
        self.owner = self.owner[keep]
        self.units = size

    def step(self) -> list[tuple[int, list[int], float | None]] | None:
        """One decoder step over every unit; the images finished in it (None: all done)."""
        self._admit()
        active = np.flatnonzero(self.owner >= 0)
        if not len(active):
            if self.waiting or not self.closed:
                raise RuntimeError("step() called with no image in a unit: feed() more input or close()")
            return None
        if self.closed and not self.waiting and len(active) <= self.units // 2:
            self._shrink(active)
            active = np.flatnonzero(self.owner >= 0)
        rows = self._rows(active)
        tokens = np.full(self.units * self.beams, self.pad, dtype=np.int64)
        tokens[rows] = self.search.tokens(active)
        self.stepper.cache.start(self._rows(np.flatnonzero(self.owner < 0)))  # idle rows stay at 0
        logits = self.stepper(tokens)
        if len(rows) < len(tokens):
            logits = logits[mx.array(rows)]
        done = self.search.consume(active, logits)
        if self.beams > 1:
            order = np.arange(len(tokens))
            order[rows] = self.search.sources
            self.stepper.reorder(order)
        finished = active[done]
        needed = int(self.search.steps[finished].sum()) * self.beams
        self.stats.count(steps=1, rows=len(tokens), needed=needed, images=len(finished))
        if not len(finished):
            return []
        ids = [self.search.result(u) for u in finished]
        if self.confidence:
            scores = mean_token_probability(self.model, self.stepper.cross(finished * self.beams), ids)
        else:
            scores = [None] * len(ids)
        out = [(int(self.owner[u]), row, score) for u, row, score in zip(finished, ids, scores, strict=True)]
        self.owner[finished] = -1
        return out
