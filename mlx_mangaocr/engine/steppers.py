"""Steppers: the OCR decoder one step at a time over its caches, for the searches (``search``).

``ModelStepper`` runs the model's own growing cache; ``RowStepper`` a preallocated cache in which
every row stands at its own position (``RowKVCache``), through a pure step compiled with
``mx.compile`` once per model and batch shape; ``generate`` decodes a static batch; and
``mean_token_probability`` scores the ids an image got.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from ..models.ocr.config import GenerationConfig
from ..models.ocr.kv_cache import CrossKV, FixedKVCache, RowKVCache
from ..models.ocr.model import MangaOcrModel
from .search import DecodeStats, beam_search, greedy_search


class ModelStepper:
    """One decoder step at a time over a growing KV cache: feed one token per row, get its logits.

    The searches below only talk to a stepper through ``rows``, ``__call__`` and ``reorder``, so
    the same search code can be driven by another model's logits in tests.
    """

    def __init__(self, model: MangaOcrModel, encoder_hidden_states: mx.array, gen: GenerationConfig, copies: int = 1):
        check_positions(model, gen)
        self.model = model
        self.rows = encoder_hidden_states.shape[0] * copies
        self.cross = model.cross_kv(encoder_hidden_states)
        if copies > 1:
            self.cross = [c.repeat(copies) for c in self.cross]
        self.cache = model.decoder.make_cache(self.rows, gen.max_length - 1, encoder_hidden_states.dtype)

    def __call__(self, tokens: np.ndarray) -> mx.array:
        """Tokens (rows,) at the next position -> float32 logits (rows, vocab), not yet evaluated."""
        inputs = mx.array(tokens.reshape(-1, 1))
        return self.model.decoder(inputs, self.cache, self.cross).astype(mx.float32)

    def reorder(self, rows: np.ndarray) -> None:
        """Continue with the cache rows ``rows`` (beam search's surviving hypotheses)."""
        order = mx.array(rows)
        for layer_cache in self.cache:
            layer_cache.reorder(order)


def check_positions(model: MangaOcrModel, gen: GenerationConfig) -> None:
    positions = model.config.decoder.max_position_embeddings
    if gen.max_length - 1 > positions:
        raise ValueError(
            f"max_length={gen.max_length} needs {gen.max_length - 1} decoder positions; the model has {positions}"
        )


class RowStepper:
    """The decoder step over a ``RowKVCache``: every row at its own position, attention over the
    cache's whole capacity with the positions not yet written masked out. The step is a pure
    function of fixed-shape arrays, compiled with ``mx.compile`` unless ``compiled`` is False, so it
    is traced once per batch shape and reused at every token and by later images.

    Rows are filled by ``admit``, which starts an image's cross-attention keys and values at
    position 0 in any rows while the others go on (continuous batching); ``take`` keeps a subset
    of the rows (a smaller batch shape when the work runs out); ``reorder`` follows beam search.
    """

    def __init__(self, model: MangaOcrModel, gen: GenerationConfig, rows: int, dtype: mx.Dtype, compiled: bool = True):
        check_positions(model, gen)
        self.model = model
        self.rows = rows
        self.cache = RowKVCache(model.decoder.make_cache(rows, 1, dtype), gen.max_length - 1)
        self.cross_keys: list[mx.array] | None = None
        self.cross_values: list[mx.array] | None = None
        self.step = compiled_step(model) if compiled else _pure_step(model)

    @property
    def capacity(self) -> int:
        return self.cache.capacity

    def admit(self, rows: np.ndarray, cross: list[CrossKV]) -> None:
        """Start new images in ``rows`` (one cross-attention row each) at position 0."""
        if self.cross_keys is None:
            self.cross_keys = [mx.zeros((self.rows, *c.keys.shape[1:]), c.keys.dtype) for c in cross]
            self.cross_values = [mx.zeros((self.rows, *c.values.shape[1:]), c.values.dtype) for c in cross]
        where = mx.array(rows)
        for layer, c in enumerate(cross):
            self.cross_keys[layer][where] = c.keys
            self.cross_values[layer][where] = c.values
        self.cache.start(rows)

    def cross(self, rows: np.ndarray) -> list[CrossKV]:
        """The cross-attention keys and values of ``rows``."""
        where = mx.array(rows)
        return [CrossKV(k[where], v[where]) for k, v in zip(self.cross_keys, self.cross_values, strict=True)]

    def take(self, rows: np.ndarray) -> None:
        """Keep only ``rows``, in that order."""
        where = mx.array(rows)
        self.cross_keys = [a[where] for a in self.cross_keys]
        self.cross_values = [a[where] for a in self.cross_values]
        self.cache.take(rows)
        self.rows = len(rows)

    def __call__(self, tokens: np.ndarray) -> mx.array:
        """Tokens (rows,), each at its row's next position -> float32 logits (rows, vocab)."""
        cache = self.cache
        cache.fit()
        logits, cache.keys, cache.values = self.step(
            mx.array(tokens.reshape(-1, 1)),
            mx.array(cache.position),
            cache.keys,
            cache.values,
            self.cross_keys,
            self.cross_values,
        )
        cache.advance()
        return logits

    def reorder(self, rows: np.ndarray) -> None:
        """Continue with the cache rows ``rows`` (beam search's surviving hypotheses)."""
        self.cache.take(rows)


class CompiledStepper(RowStepper):
    """``RowStepper`` over a batch of encoded images, all starting together (static batching)."""

    def __init__(self, model: MangaOcrModel, encoder_hidden_states: mx.array, gen: GenerationConfig, copies: int = 1):
        rows = encoder_hidden_states.shape[0] * copies
        super().__init__(model, gen, rows, encoder_hidden_states.dtype)
        cross = model.cross_kv(encoder_hidden_states)
        if copies > 1:
            cross = [c.repeat(copies) for c in cross]
        self.cross_keys = [c.keys for c in cross]
        self.cross_values = [c.values for c in cross]


def _pure_step(model: MangaOcrModel):
    def pure_step(tokens, position, keys, values, cross_keys, cross_values):
        cache = [FixedKVCache(k, v, position) for k, v in zip(keys, values, strict=True)]
        cross = [CrossKV(k, v) for k, v in zip(cross_keys, cross_values, strict=True)]
        logits = model.decoder(tokens, cache, cross).astype(mx.float32)
        return logits, [c.keys for c in cache], [c.values for c in cache]

    return pure_step


def compiled_step(model: MangaOcrModel):
    """The model's decoder step as a pure function of arrays, compiled once per model and weights.
    A compiled step holds the weights it was traced with, so it is traced again when they change
    (quantized, reloaded): the key is the identity of every parameter array. It is kept on the
    model (``_engine_step``), so it goes when the model goes."""
    weights = tuple(id(v) for _, v in tree_flatten(model.parameters()))
    kept = getattr(model, "_engine_step", None)
    if kept is not None and kept[0] == weights:
        return kept[1]
    step = mx.compile(_pure_step(model))
    object.__setattr__(model, "_engine_step", (weights, step))  # beside the module tree, not in it
    return step


def generate(
    model: MangaOcrModel,
    encoder_hidden_states: mx.array,
    gen: GenerationConfig,
    compile_step: bool = False,
    stats: DecodeStats | None = None,
) -> list[list[int]]:
    """Decode encoded images as one static batch with ``gen``'s settings: beam search when
    ``num_beams > 1``, else greedy.

    ``compile_step`` runs each decoder step through ``CompiledStepper`` (same results).
    ``stats`` counts the decoder work.
    """
    stepper = CompiledStepper if compile_step else ModelStepper
    if gen.num_beams > 1:
        return beam_search(stepper(model, encoder_hidden_states, gen, copies=gen.num_beams), gen, stats)
    return greedy_search(stepper(model, encoder_hidden_states, gen), gen, stats)


def mean_token_probability(model: MangaOcrModel, cross: list[CrossKV], rows: list[list[int]]) -> list[float]:
    """For each image's ids (start token first), the mean over its generated tokens of the
    probability the model gives that token after the tokens before it: one teacher-forced pass
    over the whole batch, given the images' cross-attention keys and values (``cross_kv``). A
    confidence score in (0, 1]; it does not count any banned tokens."""
    longest = max(len(r) for r in rows)
    if longest < 2:
        return [1.0 for _ in rows]
    inputs = np.zeros((len(rows), longest - 1), dtype=np.int32)
    targets = np.zeros((len(rows), longest - 1), dtype=np.int32)
    valid = np.zeros((len(rows), longest - 1), dtype=bool)
    for i, r in enumerate(rows):
        inputs[i, : len(r) - 1], targets[i, : len(r) - 1], valid[i, : len(r) - 1] = r[:-1], r[1:], True
    cache = model.decoder.make_cache(len(rows), longest - 1, cross[0].keys.dtype)
    logits = model.decoder(mx.array(inputs), cache, cross, last_only=False)
    logits = logits.astype(mx.float32)
    log_probs = mx.take_along_axis(logits, mx.array(targets)[..., None], axis=-1)[..., 0]
    log_probs = log_probs - mx.logsumexp(logits, axis=-1)
    probs = np.exp(np.array(log_probs))
    return [float(probs[i][valid[i]].mean()) if valid[i].any() else 1.0 for i in range(len(rows))]
