"""One optimizer update: gradients of micro-batches summed (gradient accumulation), summed over
``mx.distributed`` ranks, clipped by global norm, applied. Both halves are compiled with
``mx.compile``, the model, the optimizer state and MLX's random state as inputs and outputs (as
mlx-lm's trainer), and traced once per batch shape.

Every micro-batch's loss is its summed token cross-entropy times ``1 / tokens``, where ``tokens``
counts the unmasked label positions of the whole global batch (every micro-batch on every rank).
So K micro-batches over R ranks give exactly the gradient of one batch of all their samples: the
mean over the batch's tokens, as transformers with ``num_items_in_batch``, not a mean of means.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten, tree_map, tree_unflatten

from ...models.layers import differentiable
from ...models.ocr.loss import loss_sum
from ...models.ocr.model import MangaOcrModel


class Stepper:
    """The compiled gradient and update functions of one model and optimizer."""

    def __init__(self, model: MangaOcrModel, optimizer, max_grad_norm: float, group=None, compiled: bool = True):
        self.model, self.optimizer, self.max_grad_norm, self.group = model, optimizer, max_grad_norm, group
        self.state = [model.state, optimizer.state, mx.random.state]
        value_and_grad = nn.value_and_grad(model, loss_sum)

        def gradients(pixels, decoder_inputs, labels, scale):
            loss, grads = value_and_grad(model, pixels, decoder_inputs, labels)
            return loss * scale, tree_map(lambda g: g * scale, grads)

        def update(grads, norm):
            if max_grad_norm > 0:
                grads = clip_grad_norm(grads, norm, max_grad_norm)
            optimizer.update(model, grads)

        wrap = (lambda f: mx.compile(f, inputs=self.state, outputs=self.state)) if compiled else (lambda f: f)
        self._gradients, self._update = wrap(gradients), wrap(update)

    def gradients(self, pixels: np.ndarray, decoder_inputs: np.ndarray, labels: np.ndarray, tokens: int):
        """(loss share, gradients) of one micro-batch, for a global batch of ``tokens`` tokens."""
        with differentiable():
            return self._gradients(mx.array(pixels), mx.array(decoder_inputs), mx.array(labels),
                                   mx.array(1.0 / tokens, dtype=mx.float32))  # fmt: skip

    def summed(self, grads):
        """``grads`` summed over the ranks (one process: as they are)."""
        if self.group is not None and self.group.size() > 1:
            return all_sum(grads, self.group)
        return grads

    def update(self, grads, norm: mx.array | None = None) -> None:
        """Clip and apply ``grads`` (already summed over the ranks); ``norm``, their global norm,
        when the caller has it already (``global_norm``)."""
        self._update(grads, global_norm(grads) if norm is None else norm)


def global_norm(grads) -> mx.array:
    """The 2-norm of all gradients together."""
    return mx.sqrt(sum((g.astype(mx.float32).square().sum() for _, g in tree_flatten(grads)), mx.array(0.0)))


def clip_grad_norm(grads, norm: mx.array, max_norm: float):
    """``torch.nn.utils.clip_grad_norm_``: scale by ``min(1, max_norm / (norm + 1e-6))``, where
    ``norm`` is the gradients' ``global_norm``."""
    factor = mx.minimum(max_norm / (norm + 1e-6), 1.0)
    return tree_map(lambda g: g * factor, grads)


def all_sum(grads, group) -> dict:
    """Every gradient summed over the ranks, in one collective over one flat buffer."""
    flat = tree_flatten(grads)
    sizes = [g.size for _, g in flat]
    summed = mx.distributed.all_sum(mx.concatenate([g.reshape(-1) for _, g in flat]), group=group)
    parts = mx.split(summed, np.cumsum(sizes)[:-1].tolist()) if len(sizes) > 1 else [summed]
    return tree_unflatten([(name, part.reshape(g.shape)) for (name, g), part in zip(flat, parts, strict=True)])


def add(a, b):
    """Two gradient trees summed (``b`` may be None)."""
    return a if b is None else tree_map(mx.add, a, b)
