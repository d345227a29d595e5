"""The optimizers and learning-rate schedules of Hugging Face's Trainer, in MLX.

Each matches its PyTorch counterpart's update (``tests/test_training.py`` checks the parameters
after several steps against a float64 PyTorch loop):

- ``adamw``: ``torch.optim.AdamW`` (decoupled weight decay, bias correction). MLX's ``AdamW``
  defaults differ (no bias correction, weight decay 0.01), so both are set here.
- ``adam``: ``torch.optim.Adam``, whose weight decay is L2: ``weight_decay * parameter`` is added
  to the gradient before the moments.
- ``sgd``: ``torch.optim.SGD`` without momentum; weight decay as L2.

Schedules are transformers' ``get_scheduler`` lambdas (``linear``, ``cosine``, ``constant``, with
warmup): update k (from 0) uses the learning rate at step k, so with warmup the first update
uses lr 0. MLX evaluates a schedule at the optimizer's step count before incrementing it, which is
the same convention.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import mlx.core as mx
import mlx.optimizers as optim

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULES = ("linear", "cosine", "constant")
BETAS = (0.9, 0.999)
EPS = 1e-8


def schedule(lr: float, kind: str, warmup: int, total: int) -> Callable[[mx.array], mx.array]:
    """The learning rate at optimizer step ``step`` (0 for the first update)."""
    if kind not in SCHEDULES:
        raise ValueError(f"learning-rate schedule {kind!r}: choose one of {', '.join(SCHEDULES)}")
    warm_span = float(max(1, warmup))
    decay_span = float(max(1, total - warmup))

    def rate(step: mx.array) -> mx.array:
        step = mx.array(step).astype(mx.float32)
        if kind == "linear":
            after = mx.maximum((total - step) / decay_span, 0.0)
        elif kind == "cosine":
            after = mx.maximum(0.5 * (1.0 + mx.cos(math.pi * (step - warmup) / decay_span)), 0.0)
        else:
            after = mx.ones_like(step)
        return lr * mx.where(step < warmup, step / warm_span, after)

    return rate


class AdamL2(optim.Adam):
    """``torch.optim.Adam`` with ``weight_decay``: L2 added to the gradient, bias correction on."""

    def __init__(self, learning_rate, weight_decay: float = 0.0):
        super().__init__(learning_rate, betas=list(BETAS), eps=EPS, bias_correction=True)
        self.weight_decay = weight_decay

    def apply_single(self, gradient: mx.array, parameter: mx.array, state: dict):
        if self.weight_decay:
            gradient = gradient + self.weight_decay * parameter
        return super().apply_single(gradient, parameter, state)


def make_optimizer(name: str, lr: Callable | float, weight_decay: float = 0.0) -> optim.Optimizer:
    """The optimizer ``name`` with PyTorch's defaults and update rule."""
    if name == "adamw":
        return optim.AdamW(lr, betas=list(BETAS), eps=EPS, weight_decay=weight_decay, bias_correction=True)
    if name == "adam":
        return AdamL2(lr, weight_decay)
    if name == "sgd":
        return optim.SGD(lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
