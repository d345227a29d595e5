"""The search rules, matching transformers ``generate``: greedy and beam search over units (an
image and its rows), each unit at its own length, with the MinLength and NoRepeatNGram bans.

A search sees the model only through a stepper (``steppers``): tokens in, logits out, and for beam
search which rows go on. Both return, for every image, the token ids transformers would return:
the start token, the generated tokens and the end token (if one was produced), without trailing
padding. The small per-step bookkeeping runs in NumPy on the host, one transfer per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import mlx.core as mx
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..models.ocr.config import GenerationConfig

_NEG = np.float32(-1.0e9)  # transformers' "very large negative" score


def banned_ngram_tokens(sequence: np.ndarray, ngram_size: int) -> np.ndarray:
    """Tokens that would repeat an ``ngram_size``-gram already in ``sequence``.

    Same rule as transformers' ``NoRepeatNGramLogitsProcessor``: the n-grams are taken over the
    whole sequence, the start token included.
    """
    cur_len = sequence.shape[0]
    if ngram_size == 0 or cur_len < ngram_size:  # no complete n-gram yet
        return np.empty(0, dtype=sequence.dtype)
    windows = sliding_window_view(sequence, ngram_size)
    prefix = sequence[cur_len - ngram_size + 1 :]
    matches = np.all(windows[:, :-1] == prefix, axis=1)
    return np.unique(windows[matches, -1])


def ban_mask(histories: Sequence[np.ndarray], gen: GenerationConfig, vocab_size: int) -> np.ndarray | None:
    """Additive mask (rows, vocab): -inf on the tokens each row may not take next, as
    transformers' MinLength and NoRepeatNGram logits processors rule; None when nothing is banned.

    ``histories``: each row's tokens so far (rows may have different lengths). Runs on the host
    from tokens the host already has, so the search computes it while the device runs the step
    (``mx.async_eval``).
    """
    lengths = [len(h) for h in histories]
    ngram = gen.no_repeat_ngram_size
    if not any(n < gen.min_length or (ngram and n >= ngram) for n in lengths):
        return None
    mask = np.zeros((len(histories), vocab_size), dtype=np.float32)
    for row, seq in enumerate(histories):
        if len(seq) < gen.min_length:
            mask[row, gen.eos_token_id] = -np.inf
        if ngram:
            banned = banned_ngram_tokens(seq, ngram)
            if banned.size:
                mask[row, banned] = -np.inf
    return mask


@dataclass
class DecodeStats:
    """Decoder work, counted in row-steps: one cache row through one decoder step."""

    images: int = 0
    steps: int = 0  # decoder steps run
    row_steps: int = 0  # rows in each step, summed: padding and idle rows included
    needed_row_steps: int = 0  # what the images need alone: each one's own steps times its beams

    def count(self, steps: int, rows: int, needed: int, images: int) -> None:
        self.steps += steps
        self.row_steps += steps * rows
        self.needed_row_steps += needed
        self.images += images


class GreedySearch:
    """Greedy decoding (``num_beams=1``) of ``units`` images, one row each, each at its own length.

    ``start(u)`` begins an image in unit u; ``consume(units, logits)`` takes one step's logits for
    those units' rows and says which are done; ``result(u)`` gives an image's ids. A unit's tokens
    depend only on its own logits, so it decodes the same alone or beside others.
    """

    rows_per_unit = 1

    def __init__(self, gen: GenerationConfig, units: int):
        self.gen = gen
        pad = gen.pad_token_id if gen.pad_token_id is not None else gen.eos_token_id
        self.sequences = np.full((units, gen.max_length), pad, dtype=np.int64)
        self.lengths = np.ones(units, dtype=np.int64)
        self.done = np.ones(units, dtype=bool)

    @property
    def steps(self) -> np.ndarray:
        """The steps each unit has taken: one per generated token."""
        return self.lengths - 1

    def start(self, unit: int) -> None:
        self.sequences[unit, 0] = self.gen.decoder_start_token_id
        self.lengths[unit], self.done[unit] = 1, False

    def take(self, units: np.ndarray) -> None:
        for name in ("sequences", "lengths", "done"):
            setattr(self, name, getattr(self, name)[units])

    def tokens(self, units: np.ndarray) -> np.ndarray:
        """The token each unit's row is fed next (its last one)."""
        return self.sequences[units, self.lengths[units] - 1]

    def consume(self, units: np.ndarray, logits: mx.array) -> np.ndarray:
        """One step: logits (rows of ``units``, vocab) -> which of ``units`` are done now."""
        mx.async_eval(logits)  # the device runs the step while the host works out the bans
        at = np.flatnonzero(~self.done[units])
        going = units[at]
        mask = ban_mask([self.sequences[u, : self.lengths[u]] for u in going], self.gen, logits.shape[-1])
        if len(going) < len(units):
            logits = logits[mx.array(at)]
        if mask is not None:
            logits = logits + mx.array(mask)
        tokens = np.array(mx.argmax(logits, axis=-1)).astype(np.int64)  # the one sync of the step
        self.sequences[going, self.lengths[going]] = tokens
        self.lengths[going] += 1
        self.done[going] = (tokens == self.gen.eos_token_id) | (self.lengths[going] >= self.gen.max_length)
        return self.done[units]

    def result(self, unit: int) -> list[int]:
        return self.sequences[unit, : self.lengths[unit]].tolist()


def greedy_search(step, gen: GenerationConfig, stats: DecodeStats | None = None) -> list[list[int]]:
    """Greedy decoding (``num_beams=1``) of a static batch, one row per image."""
    search = GreedySearch(gen, step.rows)
    units = np.arange(step.rows)
    for u in units:
        search.start(u)
    steps = 0
    while not search.done.all():
        search.consume(units, step(search.tokens(units)))
        steps += 1
    if stats is not None:
        stats.count(steps, step.rows, int(search.steps.sum()), len(units))
    return [search.result(u) for u in units]


def _gather(array: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """``array[b, indices[b, j], ...]`` for every batch row b (transformers' ``_gather_beams``)."""
    idx = indices.reshape(indices.shape + (1,) * (array.ndim - 2))
    return np.take_along_axis(array, idx, axis=1)


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores of every row, best first (ties: lower index first)."""
    if scores.shape[1] > 4 * k:  # partition first: a full sort of beams * vocab is slow
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.lexsort((part, -np.take_along_axis(scores, part, axis=1)), axis=1)
        return np.take_along_axis(part, order, axis=1)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def _penalty(lengths: np.ndarray, length_penalty: float) -> np.ndarray:
    """``np.float32(length ** length_penalty)`` per unit, computed as transformers does (Python floats)."""
    return np.array([np.float32(int(n) ** length_penalty) for n in lengths], dtype=np.float32)


class BeamSearch:
    """Beam search over ``units`` images, ``num_beams`` rows each (rows ``u * beams`` to
    ``u * beams + beams - 1``): a port of transformers' vectorized ``_beam_search`` (same candidate
    count, length penalty, early stopping and tie rules) in which every unit has its own length,
    so that an image can start in a unit while the others go on.

    ``consume`` says when a unit is done by the rule transformers applies to a batch of one, so a
    unit decodes exactly as it would alone. ``batch_done`` is transformers' rule for a static batch
    (every unit goes on until the batch as a whole stops), which ``beam_search`` follows.
    """

    def __init__(self, gen: GenerationConfig, units: int):
        self.gen = gen
        beams, max_length = gen.num_beams, gen.max_length
        self.rows_per_unit = beams
        fill = gen.pad_token_id or gen.eos_token_id  # transformers' fill value, kept for fidelity
        self.running_sequences = np.full((units, beams, max_length), fill, dtype=np.int64)
        self.sequences = self.running_sequences.copy()
        self.running_beam_scores = np.zeros((units, beams), dtype=np.float32)
        self.beam_scores = np.full((units, beams), _NEG, dtype=np.float32)
        self.is_sent_finished = np.zeros((units, beams), dtype=bool)
        self.improvement_possible = np.ones(units, dtype=bool)
        self.running_beam_indices = np.full((units, beams, max_length - 1), -1, dtype=np.int64)
        self.beam_indices = self.running_beam_indices.copy()
        self.cur_len = np.ones(units, dtype=np.int64)
        self.hits_stop_all = np.zeros(units, dtype=bool)
        self.done = np.ones(units, dtype=bool)
        self.steps = np.zeros(units, dtype=np.int64)
        self.sources: np.ndarray | None = None

    _STATE = ("running_sequences", "sequences", "running_beam_scores", "beam_scores", "is_sent_finished",
              "improvement_possible", "running_beam_indices", "beam_indices", "cur_len", "hits_stop_all", "done",
              "steps")  # fmt: skip

    def start(self, unit: int) -> None:
        fill = self.gen.pad_token_id or self.gen.eos_token_id
        self.running_sequences[unit] = fill
        self.running_sequences[unit, :, 0] = self.gen.decoder_start_token_id
        self.sequences[unit] = self.running_sequences[unit]
        self.running_beam_scores[unit] = 0.0
        self.running_beam_scores[unit, 1:] = _NEG
        self.beam_scores[unit] = _NEG
        self.is_sent_finished[unit] = False
        self.improvement_possible[unit] = True
        self.running_beam_indices[unit] = -1
        self.beam_indices[unit] = -1
        self.cur_len[unit], self.hits_stop_all[unit], self.done[unit], self.steps[unit] = 1, False, False, 0

    def take(self, units: np.ndarray) -> None:
        for name in self._STATE:
            setattr(self, name, getattr(self, name)[units])

    def tokens(self, units: np.ndarray) -> np.ndarray:
        """The token each of ``units``' rows is fed next."""
        last = self.cur_len[units, None, None] - 1
        return np.take_along_axis(self.running_sequences[units], last, axis=2).reshape(-1)

    def consume(self, units: np.ndarray, logits: mx.array) -> np.ndarray:
        """One step: logits (rows of ``units``, vocab) -> which of ``units`` are done now.

        Leaves in ``sources`` the row each of ``units``' rows continues from (in the step's row
        numbering: unit u's rows are ``u * beams ...``), for the stepper's ``reorder``."""
        gen, beams = self.gen, self.rows_per_unit
        n, max_length = len(units), gen.max_length
        length_penalty, early_stopping = gen.length_penalty, gen.early_stopping
        cur = self.cur_len[units]
        log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        mx.async_eval(log_probs)  # the device runs the step while the host works out the bans
        vocab = log_probs.shape[-1]
        running_sequences = self.running_sequences[units]
        histories = [running_sequences[i, b, : cur[i]] for i in range(n) for b in range(beams)]
        mask = ban_mask(histories, gen, vocab)
        log_probs = np.array(log_probs)  # the one sync of the step
        if mask is not None:
            log_probs = log_probs + mask
        log_probs = log_probs.reshape(n, beams, vocab) + self.running_beam_scores[units][:, :, None]
        log_probs = log_probs.reshape(n, beams * vocab)

        # Top-K continuations over all beams (2 * beams: one end token).
        topk_indices = _topk(log_probs, 2 * beams)
        topk_log_probs = np.take_along_axis(log_probs, topk_indices, axis=1)
        topk_beam = topk_indices // vocab
        topk_running_beam_indices = _gather(self.running_beam_indices[units], topk_beam)
        topk_running_sequences = _gather(running_sequences, topk_beam)
        topk_ids = topk_indices % vocab
        unit_axis, cand_axis = np.arange(n)[:, None], np.arange(2 * beams)[None, :]
        topk_running_sequences[unit_axis, cand_axis, cur[:, None]] = topk_ids
        topk_running_beam_indices[unit_axis, cand_axis, cur[:, None] - 1] = topk_beam + units[:, None] * beams

        # Which candidates stop here: end token, or the maximum length reached.
        hits_stop = (topk_ids == gen.eos_token_id) | (cur + 1 >= max_length)[:, None]

        # The best unfinished candidates go on.
        topk_running_log_probs = topk_log_probs + hits_stop.astype(np.float32) * _NEG
        keep = _topk(topk_running_log_probs, beams)
        running_sequences = _gather(topk_running_sequences, keep)
        running_beam_scores = _gather(topk_running_log_probs, keep)
        running_beam_indices = _gather(topk_running_beam_indices, keep)

        # Finished candidates among the top num_beams join the finished set if they score better.
        is_sent_finished, beam_scores = self.is_sent_finished[units], self.beam_scores[units]
        improvement_possible = self.improvement_possible[units]
        just_finished = hits_stop & (np.arange(2 * beams) < beams)[None, :]
        finished_scores = topk_log_probs / _penalty(cur, length_penalty)[:, None]
        batch_full = np.all(is_sent_finished, axis=-1, keepdims=True) & (early_stopping is True)
        finished_scores = finished_scores + batch_full.astype(np.float32) * _NEG
        finished_scores = finished_scores + (~improvement_possible[:, None]).astype(np.float32) * _NEG
        finished_scores = finished_scores + (~just_finished).astype(np.float32) * _NEG
        merged_scores = np.concatenate([beam_scores, finished_scores], axis=1)
        best = _topk(merged_scores, beams)
        sequences = _gather(np.concatenate([self.sequences[units], topk_running_sequences], axis=1), best)
        beam_scores = _gather(merged_scores, best)
        beam_indices = _gather(np.concatenate([self.beam_indices[units], topk_running_beam_indices], axis=1), best)
        is_sent_finished = _gather(np.concatenate([is_sent_finished, just_finished], axis=1), best)

        # The cache follows the hypotheses that go on.
        self.sources = np.take_along_axis(running_beam_indices, cur[:, None, None] - 1, axis=2).reshape(-1)

        cur = cur + 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = np.full(n, max_length - 1)
        else:
            best_length = cur - 1
        best_running = running_beam_scores[:, :1] / _penalty(best_length, length_penalty)[:, None]
        worst_finished = np.where(is_sent_finished, np.min(beam_scores, axis=1, keepdims=True), _NEG)
        improvement_possible = improvement_possible & np.any(best_running > worst_finished, axis=-1)
        open_beam = ~(is_sent_finished.all(axis=1) & (early_stopping is True))
        hits_stop_all = hits_stop.all(axis=1)
        done_now = ~(improvement_possible & open_beam & ~hits_stop_all)

        state = (running_sequences, sequences, running_beam_scores, beam_scores, is_sent_finished,
                 improvement_possible, running_beam_indices, beam_indices, cur, hits_stop_all)  # fmt: skip
        for name, value in zip(self._STATE[: len(state)], state, strict=True):
            getattr(self, name)[units] = value
        self.steps[units] += ~self.done[units]
        self.done[units] |= done_now
        return self.done[units]

    def batch_done(self) -> bool:
        """transformers' stopping rule for all units decoded as one static batch."""
        open_beam = not (self.is_sent_finished.all() and self.gen.early_stopping is True)
        return not (self.improvement_possible.any() and open_beam and not self.hits_stop_all.all())

    def result(self, unit: int) -> list[int]:
        generated = int(np.sum(self.beam_indices[unit, 0] != -1))
        return self.sequences[unit, 0, : 1 + generated].tolist()


def beam_search(step, gen: GenerationConfig, stats: DecodeStats | None = None) -> list[list[int]]:
    """Beam search of a static batch, ``num_beams`` rows per image, stopping as transformers'
    ``generate`` stops a batch."""
    batch = step.rows // gen.num_beams
    search = BeamSearch(gen, batch)
    units = np.arange(batch)
    for u in units:
        search.start(u)
    steps = 0
    while True:
        search.consume(units, step(search.tokens(units)))
        step.reorder(search.sources)
        steps += 1
        if search.batch_done():
            break
    if stats is not None:
        stats.count(steps, step.rows, int(search.steps.sum()) * gen.num_beams, len(units))
    return [search.result(u) for u in units]


def make_search(gen: GenerationConfig, units: int) -> GreedySearch | BeamSearch:
    """The search ``gen`` asks for, over ``units`` images."""
    return BeamSearch(gen, units) if gen.num_beams > 1 else GreedySearch(gen, units)
