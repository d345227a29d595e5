"""A training run's settings, and the part of them that decides its weights (``identity``), by
which an output folder is recognised as holding this run or another."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from .optimizer import OPTIMIZERS, SCHEDULES

FREEZE = ("none", "encoder", "decoder")
# Settings that do not change the weights a run ends with: how often it validates or saves, how
# the batch is split into micro-batches (the same sums), and what to do with the folder.
NOT_IDENTITY = {"output", "val", "val_books", "eval_every", "save_every", "resume", "force", "grad_accum",
                "checkpoint_encoder", "workers", "val_batch_size"}  # fmt: skip


@dataclass
class TrainSettings:
    model: str
    train: list[str]
    output: str
    val: list[str] = field(default_factory=list)
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 32  # the global batch: one optimizer update, whatever the ranks and micro-batches
    grad_accum: int = 1  # micro-batches per update
    lr: float = 5e-5
    optimizer: str = "adamw"
    weight_decay: float = 0.0
    warmup: int = 0
    lr_schedule: str = "linear"
    max_grad_norm: float = 1.0  # 0: no clipping
    freeze: str = "none"
    augment: bool = True
    shuffle: bool = True
    dropout: float | None = None  # None: the checkpoint's config
    seed: int = 0
    eval_every: int = 0  # 0: validate at the end only
    save_every: int = 100
    books: str | None = None  # Manga109-s books of --train
    val_books: str | None = None  # Manga109-s books of --val
    skip_bad: bool = False
    max_length: int | None = None  # None: the checkpoint's generation max_length (300 for manga-ocr)
    checkpoint_encoder: bool = False
    workers: int = 4
    val_batch_size: int = 16
    resume: bool = False
    force: bool = False

    def check(self) -> None:
        """``ValueError`` naming the first setting that cannot work."""
        if (self.steps is None) == (self.epochs is None):
            raise ValueError("give exactly one of --steps and --epochs")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"--steps must be 1 or more, got {self.steps}")
        if self.epochs is not None and not (self.epochs > 0 and math.isfinite(self.epochs)):
            raise ValueError(f"--epochs must be a number above 0, got {self.epochs}")
        for name in ("batch_size", "grad_accum", "workers", "val_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be 1 or more, got {getattr(self, name)}")
        for name in ("warmup", "eval_every", "save_every", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or more, got {getattr(self, name)}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"--batch-size {self.batch_size} is not a multiple of --grad-accum {self.grad_accum}")
        for name in ("lr", "weight_decay", "max_grad_norm"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer {self.optimizer!r}: choose one of {', '.join(OPTIMIZERS)}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"--lr-schedule {self.lr_schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if self.freeze not in FREEZE:
            raise ValueError(f"--freeze {self.freeze!r}: choose one of {', '.join(FREEZE)}")
        if self.dropout is not None and not 0 <= self.dropout < 1:
            raise ValueError(f"--dropout must be 'off' or a number in [0, 1), got {self.dropout}")
        if self.max_length is not None and self.max_length < 2:
            raise ValueError(f"--max-length must be 2 or more ([CLS] and [SEP]), got {self.max_length}")
        if self.resume and self.force:
            raise ValueError("--resume continues a run and --force starts it over: give one")

    def identity(self) -> dict:
        """What decides the weights: the source model, the data and every setting that changes an
        update. Local folders are named by their absolute path."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IDENTITY}
        out["model"] = _source(self.model)
        out["train"] = [_source(p) for p in self.train]
        out["books"] = _source(self.books) if self.books else None
        return out


def _source(name: str) -> str:
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name
