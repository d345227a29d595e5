"""``mlx-mangaocr train``: fine-tune manga-ocr on labelled crops, as transformers would train it.

mlx-mangaocr train --train Manga109s/ --books train.txt --val Manga109s/ --epochs 1 --output tuned/
mlx-mangaocr train --train mine.jsonl --steps 2000 --output tuned/ --resume
mlx.launch -n 2 -- mlx-mangaocr train ...        # data-parallel over ranks (--batch-size is global)
"""

from __future__ import annotations

import argparse
import sys

from ...core.errors import MangaOcrError
from ...core.ranks import DistributedError, Ranks
from ...pipelines.datasets import FORMS, DataError
from ...pipelines.training import OPTIMIZERS, SCHEDULES, TrainCallback, TrainSettings, train
from . import common
from .common import error


def _dropout(text: str) -> float | None:
    if text == "off":
        return 0.0
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be 'off' or a number in [0, 1), got {text}")
    return value


def build_parser():
    p = common.parser("train", "Fine-tune the OCR model on labelled crops. DATA is " + FORMS + ".")
    p.add_argument("--model", default=None,
                   help="the model to start from: hub id, Hugging Face folder or converted folder "
                        "(default: kha-white/manga-ocr-base)")  # fmt: skip
    p.add_argument("--train", nargs="+", required=True, metavar="DATA", help="training data")
    p.add_argument("--val", nargs="+", default=[], metavar="DATA", help="validation data (CER, exact match)")
    p.add_argument("--output", "-o", required=True, metavar="DIR",
                   help="the run's folder: final model, best/, resume state, metrics.jsonl, training.png")  # fmt: skip
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument("--steps", type=common.positive_int, metavar="N", help="optimizer updates")
    length.add_argument("--epochs", type=common.positive, metavar="E", help="passes over the training data")
    p.add_argument("--batch-size", type=common.positive_int, default=32, metavar="B",
                   help="samples per optimizer update, over all ranks and micro-batches (default 32)")  # fmt: skip
    p.add_argument("--grad-accum", type=common.positive_int, default=1, metavar="K",
                   help="compute each batch in K micro-batches (less memory, the same update; default 1)")  # fmt: skip
    p.add_argument("--lr", type=common.non_negative, default=5e-5, help="peak learning rate (default 5e-5)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw", help="default adamw, as Hugging Face's Trainer")
    p.add_argument("--weight-decay", type=common.non_negative, default=0.0, help="default 0")
    p.add_argument("--warmup", type=common.non_negative_int, default=0, metavar="N", help="warmup steps (default 0)")
    p.add_argument("--lr-schedule", choices=SCHEDULES, default="linear", help="decay after warmup (default linear)")
    p.add_argument("--max-grad-norm", type=common.non_negative, default=1.0,
                   help="clip gradients to this global norm; 0 turns clipping off (default 1.0)")  # fmt: skip
    p.add_argument("--freeze", choices=("none", "encoder", "decoder"), default="none", help="what does not train")
    p.add_argument("--no-augment", dest="augment", action="store_false", help="no image augmentation")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="samples in file order, consecutive batches, no bucketing by length")  # fmt: skip
    p.add_argument("--dropout", type=_dropout, default=None, metavar="off|P",
                   help="dropout probability everywhere (default: the checkpoint's, 0.1 in the decoder)")  # fmt: skip
    p.add_argument("--seed", type=common.non_negative_int, default=0, help="data order, augmentation, dropout")
    p.add_argument("--max-length", type=common.positive_int, default=None, metavar="N",
                   help="labels longer than N tokens ([CLS] and [SEP] included) are cut, as manga-ocr cuts them "
                        "(default: the model's max_length, 300)")  # fmt: skip
    p.add_argument("--eval-every", type=common.non_negative_int, default=0, metavar="N",
                   help="validate every N steps (default: at the end only); the best CER goes to DIR/best")  # fmt: skip
    p.add_argument("--save-every", type=common.non_negative_int, default=100, metavar="N",
                   help="save the resumable state every N steps (default 100; always at the end)")  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue the run saved in DIR")
    p.add_argument("--force", action="store_true", help="replace the run in DIR (only a run's own files)")
    p.add_argument("--books", metavar="FILE", help="Manga109-s: train on these books only (one title a line)")
    p.add_argument("--val-books", metavar="FILE", help="Manga109-s: validate on these books only")
    p.add_argument("--skip-bad", action="store_true", help="leave out bad samples (each is named) instead of stopping")
    p.add_argument("--checkpoint-encoder", action="store_true",
                   help="recompute the encoder's activations in the backward pass: less memory, more time")  # fmt: skip
    p.add_argument("--workers", type=common.positive_int, default=4, help="threads preparing images (default 4)")
    common.add_progress(p)
    return p


class _Callback(TrainCallback):
    def __init__(self, show: bool, rank: int):
        self.show, self.rank, self.total, self.start = show, rank, 0, 0

    def on_start(self, start: int, total: int, info: dict) -> None:
        self.total, self.start = total, start
        if self.rank == 0:
            print(f"training {info['samples']} samples ({info['truncated_labels']} labels cut at "
                  f"{info['max_length']} tokens), {info['batches_per_epoch']} batches an epoch, steps {start + 1}-"
                  f"{total}, {info['ranks']} rank(s)", file=sys.stderr, flush=True)  # fmt: skip

    def on_step(self, step: int, metrics: dict) -> None:
        if self.rank != 0 or not self.show:
            return
        width = 30
        filled = width * step // max(self.total, 1)
        bar = "#" * filled + "-" * (width - filled)
        sys.stderr.write(f"\r[{bar}] step {step}/{self.total} loss {metrics['loss']:.4f} lr {metrics['lr']:.3g} "
                         f"{metrics['samples_per_second']:.1f} samples/s")  # fmt: skip
        if step == self.total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    def on_validation(self, step: int, summary: dict) -> None:
        if self.rank == 0:
            end = "\n" if self.show and step < self.total else ""
            print(f"{end}step {step}: validation CER {100 * summary['cer']:.2f}%, exact match "
                  f"{100 * summary['exact_match']:.2f}% ({summary['samples']} samples)",
                  file=sys.stderr, flush=True)  # fmt: skip

    def on_message(self, message: str) -> None:
        if self.rank == 0:
            print(("\n" if self.show else "") + message, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    settings = TrainSettings(
        model=args.model or "kha-white/manga-ocr-base", train=args.train, val=args.val, output=args.output,
        steps=args.steps, epochs=args.epochs, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
        optimizer=args.optimizer, weight_decay=args.weight_decay, warmup=args.warmup, lr_schedule=args.lr_schedule,
        max_grad_norm=args.max_grad_norm, freeze=args.freeze, augment=args.augment, shuffle=args.shuffle,
        dropout=args.dropout, seed=args.seed, eval_every=args.eval_every, save_every=args.save_every,
        books=args.books, val_books=args.val_books, skip_bad=args.skip_bad, max_length=args.max_length,
        checkpoint_encoder=args.checkpoint_encoder, workers=args.workers, resume=args.resume, force=args.force,
    )  # fmt: skip
    try:
        settings.check()
    except ValueError as e:
        error(str(e))
        return 2
    try:
        ranks = Ranks.init()
    except DistributedError as e:
        error(str(e))
        return 2
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    try:
        result = train(settings, _Callback(show, ranks.rank), ranks)
    except DataError as e:
        hint = " (--skip-bad leaves bad samples out)" if e.skippable and not args.skip_bad else ""
        error(f"{e}{hint}")
        return 2
    except MangaOcrError as e:
        error(str(e))
        return 1
    except OSError as e:  # a write the run does not wrap: still one line
        error(f"{e.filename or args.output}: {e.strerror or e}")
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: --resume continues from the last saved step", file=sys.stderr)
        return 130
    if ranks.rank == 0:
        best = f"; best validation CER {100 * result.best['val_cer']:.2f}% at step {result.best['step']}" if (
            result.best) else ""  # fmt: skip
        loss = f", final loss {result.final_loss:.4f}" if result.final_loss is not None else ""
        print(f"done: {result.steps} steps{loss}{best}; model in {result.output}", file=sys.stderr)
    return 0
