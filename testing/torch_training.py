"""The PyTorch side of training: transformers' loss and labels path, ``torch.optim``, transformers'
schedules and ``clip_grad_norm_``, as Hugging Face's Trainer runs them. The oracle of the training
tests and the PyTorch side of the training benchmark."""

from __future__ import annotations

import numpy as np
import torch
from transformers import get_scheduler


def make_optimizer(name: str, params, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(name)


def batch_loss(model, pixels: np.ndarray, labels: np.ndarray, tokens: int) -> torch.Tensor:
    """Summed token cross-entropy of a micro-batch / the global batch's tokens. The decoder input
    comes from transformers' own ``labels`` path (``shift_tokens_right``). ``pixels`` NHWC."""
    dtype = next(model.parameters()).dtype
    pixel_values = torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).to(dtype)
    target = torch.from_numpy(labels.astype(np.int64))
    logits = model(pixel_values=pixel_values, labels=target).logits
    loss = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss / tokens


def train_loop(model, batches, optimizer: str = "adamw", lr: float = 5e-5, schedule: str = "linear",
               warmup: int = 0, total: int | None = None, weight_decay: float = 0.0, max_grad_norm: float = 1.0,
               trainable=None, record_grads: bool = False):  # fmt: skip
    """Train ``model`` (dropout off: eval mode) on ``batches``, each a list of micro-batches
    ``(pixels NHWC, labels)``; return the per-step losses (and, with ``record_grads``, each step's
    accumulated gradients as the optimizer sees them: clipped, with Adam's L2 term)."""
    model.eval()
    named = [(n, p) for n, p in model.named_parameters() if trainable is None or trainable(n)]
    for n, p in model.named_parameters():
        p.requires_grad_(trainable is None or trainable(n))
    params = [p for _, p in named]
    opt = make_optimizer(optimizer, params, lr, weight_decay)
    sched = get_scheduler(schedule if schedule != "constant" else "constant_with_warmup", opt,
                          num_warmup_steps=warmup, num_training_steps=total or len(batches))  # fmt: skip
    losses, grads = [], []
    for micro in batches:
        opt.zero_grad(set_to_none=True)
        tokens = int(sum((labels != -100).sum() for _, labels in micro))
        total_loss = 0.0
        for pixels, labels in micro:
            loss = batch_loss(model, pixels, labels, tokens)
            loss.backward()
            total_loss += float(loss)
        if max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        if record_grads:  # what the moments see: clipped, and Adam's L2 weight decay is part of its gradient
            l2 = weight_decay if optimizer == "adam" else 0.0
            grads.append({n: (p.grad + l2 * p).detach().clone() for n, p in named if p.grad is not None})
        opt.step()
        sched.step()
        losses.append(total_loss)
    return (losses, grads) if record_grads else losses
