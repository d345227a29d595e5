"""Greedy and beam-search decoding with the KV cache, matching transformers ``generate``.

Both return, for every image, the token ids transformers would return: the start token, the
generated tokens and the end token (if one was produced), without trailing padding. The model
runs on the device; the small per-step bookkeeping (no-repeat n-grams, beam selection) runs in
NumPy on the host, which needs one transfer per step and nothing more.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .cache import CrossKV, FixedKVCache
from .config import GenerationConfig
from .model import MangaOcrModel

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


def ban_mask(sequences: np.ndarray, gen: GenerationConfig, vocab_size: int) -> np.ndarray | None:
    """Additive mask (rows, vocab): -inf on the tokens each row may not take next, as
    transformers' MinLength and NoRepeatNGram logits processors rule; None when nothing is banned.

    Runs on the host from tokens the host already has, so the search computes it while the
    device runs the step (``mx.async_eval``).
    """
    cur_len = sequences.shape[-1]
    if not (cur_len < gen.min_length or (gen.no_repeat_ngram_size and cur_len >= gen.no_repeat_ngram_size)):
        return None
    mask = np.zeros((sequences.shape[0], vocab_size), dtype=np.float32)
    if cur_len < gen.min_length:
        mask[:, gen.eos_token_id] = -np.inf
    if gen.no_repeat_ngram_size:
        for row, seq in enumerate(sequences):
            banned = banned_ngram_tokens(seq, gen.no_repeat_ngram_size)
            if banned.size:
                mask[row, banned] = -np.inf
    return mask


class ModelStepper:
    """One decoder step at a time over a KV cache: feed one token per row, get its logits.

    The search functions below only talk to this interface (``rows``, ``__call__``, ``reorder``),
    so the same search code can be driven by another model's logits in tests.
    """

    def __init__(self, model: MangaOcrModel, encoder_hidden_states: mx.array, gen: GenerationConfig, copies: int = 1):
        positions = model.config.decoder.max_position_embeddings
        if gen.max_length - 1 > positions:
            raise ValueError(
                f"max_length={gen.max_length} needs {gen.max_length - 1} decoder positions; the model has {positions}"
            )
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


class CompiledStepper(ModelStepper):
    """``ModelStepper`` with the step compiled by ``mx.compile`` over fixed shapes.

    The position goes in as an array and attention spans the whole preallocated cache (unwritten
    positions masked), so the graph is traced once per batch shape and reused at every token.
    The compiled function is kept on the model, so later images reuse the trace too.
    """

    def __init__(self, model: MangaOcrModel, encoder_hidden_states: mx.array, gen: GenerationConfig, copies: int = 1):
        super().__init__(model, encoder_hidden_states, gen, copies)
        self.position = 0
        self.step = compiled_step(model)

    def __call__(self, tokens: np.ndarray) -> mx.array:
        if self.position >= self.cache[0].capacity:
            raise ValueError(f"decode ran past the cache capacity of {self.cache[0].capacity} positions")
        logits, keys, values = self.step(
            mx.array(tokens.reshape(-1, 1)),
            mx.array([self.position], dtype=mx.int32),
            [c.keys for c in self.cache],
            [c.values for c in self.cache],
            [c.keys for c in self.cross],
            [c.values for c in self.cross],
        )
        for layer_cache, k, v in zip(self.cache, keys, values, strict=True):
            layer_cache.keys, layer_cache.values = k, v
            layer_cache.offset += 1
        self.position += 1
        return logits


def compiled_step(model: MangaOcrModel):
    """The model's decoder step as a pure function of arrays, compiled once per model."""
    step = getattr(model, "_compiled_step", None)
    if step is None:

        def pure_step(tokens, position, keys, values, cross_keys, cross_values):
            cache = [FixedKVCache(k, v, position) for k, v in zip(keys, values, strict=True)]
            cross = [CrossKV(k, v) for k, v in zip(cross_keys, cross_values, strict=True)]
            logits = model.decoder(tokens, cache, cross).astype(mx.float32)
            return logits, [c.keys for c in cache], [c.values for c in cache]

        step = mx.compile(pure_step)
        model._compiled_step = step
    return step


def greedy_search(step: ModelStepper, gen: GenerationConfig) -> list[list[int]]:
    """Greedy decoding (``num_beams=1``), one row per image."""
    batch = step.rows
    pad = gen.pad_token_id if gen.pad_token_id is not None else gen.eos_token_id
    sequences = np.full((batch, 1), gen.decoder_start_token_id, dtype=np.int64)
    finished = np.zeros(batch, dtype=bool)
    lengths = np.full(batch, gen.max_length)
    for _ in range(gen.max_length - 1):
        logits = step(sequences[:, -1])
        mx.async_eval(logits)  # the device runs the step while the host works out the bans
        mask = ban_mask(sequences, gen, logits.shape[-1])
        if mask is not None:
            logits = logits + mx.array(mask)
        tokens = np.array(mx.argmax(logits, axis=-1)).astype(np.int64)  # the one sync of the step
        tokens = np.where(finished, pad, tokens)
        sequences = np.concatenate([sequences, tokens[:, None]], axis=1)
        just_finished = ~finished & (tokens == gen.eos_token_id)
        lengths[just_finished] = sequences.shape[1]
        finished |= just_finished
        if finished.all():
            break
    return [sequences[i, : lengths[i]].tolist() for i in range(batch)]


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


def beam_search(step: ModelStepper, gen: GenerationConfig) -> list[list[int]]:
    """Beam search, ``num_beams`` rows per image: a port of transformers' vectorized
    ``_beam_search`` (same candidate count, length penalty, early stopping and tie rules)."""
    beams = gen.num_beams
    batch = step.rows // beams
    max_length, prompt_len = gen.max_length, 1
    length_penalty, early_stopping = gen.length_penalty, gen.early_stopping

    beams_to_keep = 2 * beams  # max(2, 1 + number of EOS tokens) * num_beams, with one EOS token
    top_num_beam_mask = np.arange(beams_to_keep) < beams
    fill = gen.pad_token_id or gen.eos_token_id  # transformers' fill value, kept for fidelity
    running_sequences = np.full((batch, beams, max_length), fill, dtype=np.int64)
    running_sequences[:, :, 0] = gen.decoder_start_token_id
    sequences = running_sequences.copy()
    running_beam_scores = np.zeros((batch, beams), dtype=np.float32)
    running_beam_scores[:, 1:] = _NEG
    beam_scores = np.full((batch, beams), _NEG, dtype=np.float32)
    is_sent_finished = np.zeros((batch, beams), dtype=bool)
    improvement_possible = np.ones((batch, 1), dtype=bool)
    running_beam_indices = np.full((batch, beams, max_length - prompt_len), -1, dtype=np.int64)
    beam_indices = running_beam_indices.copy()
    batch_offset = np.arange(batch)[:, None] * beams

    cur_len = prompt_len
    while True:
        logits = step(running_sequences[:, :, cur_len - 1].reshape(-1))
        log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
        mx.async_eval(log_probs)  # the device runs the step while the host works out the bans
        vocab = log_probs.shape[-1]
        mask = ban_mask(running_sequences[:, :, :cur_len].reshape(batch * beams, cur_len), gen, vocab)
        log_probs = np.array(log_probs)  # the one sync of the step
        if mask is not None:
            log_probs = log_probs + mask
        log_probs = log_probs.reshape(batch, beams, vocab) + running_beam_scores[:, :, None]
        log_probs = log_probs.reshape(batch, beams * vocab)

        # Top-K continuations over all beams.
        topk_indices = _topk(log_probs, beams_to_keep)
        topk_log_probs = np.take_along_axis(log_probs, topk_indices, axis=1)
        topk_beam = topk_indices // vocab
        topk_running_beam_indices = _gather(running_beam_indices, topk_beam)
        topk_running_sequences = _gather(running_sequences, topk_beam)
        topk_ids = topk_indices % vocab
        topk_running_sequences[:, :, cur_len] = topk_ids
        topk_running_beam_indices[:, :, cur_len - prompt_len] = topk_beam + batch_offset

        # Which candidates stop here: end token, or the maximum length reached.
        hits_stop = (topk_ids == gen.eos_token_id) | (cur_len + 1 >= max_length)

        # The best unfinished candidates go on.
        topk_running_log_probs = topk_log_probs + hits_stop.astype(np.float32) * _NEG
        keep = _topk(topk_running_log_probs, beams)
        running_sequences = _gather(topk_running_sequences, keep)
        running_beam_scores = _gather(topk_running_log_probs, keep)
        running_beam_indices = _gather(topk_running_beam_indices, keep)

        # Finished candidates among the top num_beams join the finished set if they score better.
        just_finished = hits_stop & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / np.float32((cur_len + 1 - prompt_len) ** length_penalty)
        batch_full = np.all(is_sent_finished, axis=-1, keepdims=True) & (early_stopping is True)
        finished_scores = finished_scores + batch_full.astype(np.float32) * _NEG
        finished_scores = finished_scores + (~improvement_possible).astype(np.float32) * _NEG
        finished_scores = finished_scores + (~just_finished).astype(np.float32) * _NEG
        merged_scores = np.concatenate([beam_scores, finished_scores], axis=1)
        best = _topk(merged_scores, beams)
        sequences = _gather(np.concatenate([sequences, topk_running_sequences], axis=1), best)
        beam_scores = _gather(merged_scores, best)
        beam_indices = _gather(np.concatenate([beam_indices, topk_running_beam_indices], axis=1), best)
        is_sent_finished = _gather(np.concatenate([is_sent_finished, just_finished], axis=1), best)

        # The cache follows the hypotheses that go on.
        step.reorder(running_beam_indices[:, :, cur_len - prompt_len].reshape(-1))

        cur_len += 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - prompt_len
        else:
            best_length = cur_len - prompt_len
        best_running = running_beam_scores[:, :1] / np.float32(best_length**length_penalty)
        worst_finished = np.where(is_sent_finished, np.min(beam_scores, axis=1, keepdims=True), _NEG)
        improvement_possible = improvement_possible & np.any(best_running > worst_finished, axis=-1, keepdims=True)
        open_beam = not (is_sent_finished.all() and early_stopping is True)
        if not (improvement_possible.any() and open_beam and not hits_stop.all()):
            break

    out = []
    for b in range(batch):
        generated = int(np.sum(beam_indices[b, 0] != -1))
        out.append(sequences[b, 0, : prompt_len + generated].tolist())
    return out


def generate(
    model: MangaOcrModel, encoder_hidden_states: mx.array, gen: GenerationConfig, compile_step: bool = False
) -> list[list[int]]:
    """Decode encoded images with ``gen``'s settings: beam search when ``num_beams > 1``, else greedy.

    ``compile_step`` runs each decoder step through ``CompiledStepper`` (same results).
    """
    stepper = CompiledStepper if compile_step else ModelStepper
    if gen.num_beams > 1:
        return beam_search(stepper(model, encoder_hidden_states, gen, copies=gen.num_beams), gen)
    return greedy_search(stepper(model, encoder_hidden_states, gen), gen)


def mean_token_probability(model: MangaOcrModel, encoder_hidden_states: mx.array, rows: list[list[int]]) -> list[float]:
    """For each image's ids (start token first), the mean over its generated tokens of the
    probability the model gives that token after the tokens before it: one teacher-forced pass
    over the whole batch. A confidence score in (0, 1]; it does not count any banned tokens."""
    longest = max(len(r) for r in rows)
    if longest < 2:
        return [1.0 for _ in rows]
    inputs = np.zeros((len(rows), longest - 1), dtype=np.int32)
    targets = np.zeros((len(rows), longest - 1), dtype=np.int32)
    valid = np.zeros((len(rows), longest - 1), dtype=bool)
    for i, r in enumerate(rows):
        inputs[i, : len(r) - 1], targets[i, : len(r) - 1], valid[i, : len(r) - 1] = r[:-1], r[1:], True
    cache = model.decoder.make_cache(len(rows), longest - 1, encoder_hidden_states.dtype)
    logits = model.decoder(mx.array(inputs), cache, model.cross_kv(encoder_hidden_states), last_only=False)
    logits = logits.astype(mx.float32)
    log_probs = mx.take_along_axis(logits, mx.array(targets)[..., None], axis=-1)[..., 0]
    log_probs = log_probs - mx.logsumexp(logits, axis=-1)
    probs = np.exp(np.array(log_probs))
    return [float(probs[i][valid[i]].mean()) if valid[i].any() else 1.0 for i in range(len(rows))]
