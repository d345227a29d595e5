"""The training objective, as transformers' ``VisionEncoderDecoderModel`` computes it from ``labels``.

Labels are the tokenizer's ``[CLS] t1 ... tn [SEP]``, padded, with every padded position set to
``IGNORE`` (-100). Given labels and no decoder inputs, transformers builds the decoder input by
``shift_tokens_right``: the start token (``[CLS]``), then the labels without their last position,
with any -100 replaced by the pad id. So the decoder reads ``[CLS] [CLS] t1 ... tn`` and learns to
emit ``[CLS] t1 ... tn [SEP]``. The loss is the cross-entropy over the positions that are not -100.

Here the loss is returned as a sum with its token count, so that a batch split into micro-batches
(gradient accumulation) or over ranks is normalized by the tokens of the whole batch.
"""

from __future__ import annotations

import mlx.core as mx
import numpy as np

IGNORE = -100


def label_array(rows: list[list[int]], pad_id: int, length: int | None = None) -> np.ndarray:
    """Label rows padded to ``length`` (default: the longest row) with ``IGNORE``. As manga-ocr's
    dataset, any position holding the pad id is ignored too."""
    length = max(map(len, rows)) if length is None else length
    out = np.full((len(rows), length), IGNORE, dtype=np.int32)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    out[out == pad_id] = IGNORE
    return out


def shift_right(labels: np.ndarray, pad_id: int, start_id: int) -> np.ndarray:
    """transformers' ``shift_tokens_right``: the start token, then the labels without their last
    position, -100 replaced by the pad id."""
    out = np.empty_like(labels)
    out[:, 0] = start_id
    out[:, 1:] = labels[:, :-1]
    out[out == IGNORE] = pad_id
    return out


def token_losses(logits: mx.array, labels: mx.array) -> tuple[mx.array, mx.array]:
    """Cross-entropy of ``logits`` (B, L, V) at ``labels`` (B, L): the sum over positions that are
    not ``IGNORE``, and their count."""
    keep = labels != IGNORE
    targets = mx.where(keep, labels, 0)
    logits = logits.astype(mx.float32)
    picked = mx.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    losses = mx.logsumexp(logits, axis=-1) - picked
    return mx.where(keep, losses, 0.0).sum(), keep.sum()


def loss_sum(model, pixel_values: mx.array, decoder_input_ids: mx.array, labels: mx.array) -> mx.array:
    """The summed token cross-entropy of one (micro-)batch, for ``nn.value_and_grad``."""
    return token_losses(model(pixel_values, decoder_input_ids), labels)[0]
