"""``train``: fine-tune the OCR model on labelled crops, as manga-ocr's training would, resumably.

The loop, per global batch (one optimizer update):
1. the loader hands this rank its micro-batches (prepared on background threads);
2. each micro-batch's gradient of (summed token loss / the global batch's tokens) is computed by
   the compiled step and added up;
3. the gradients are summed over the ranks; the loss and the gradients' norm are checked: not
   finite means the run diverged; it stops there, naming the step, and keeps the last state saved;
4. the gradients are clipped and applied (compiled);
5. every ``eval_every`` steps the validation set is read (greedy decoding) and scored through the
   eval code; the best checkpoint by CER goes to ``best/``; every ``save_every`` steps, and at the
   end, the resumable state is saved. Only rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from ...core.atomic_files import write_atomic
from ...core.errors import MangaOcrError
from ...core.locks import LockedError
from ...core.ranks import Ranks
from ...loading.ocr import Checkpoint, load_checkpoint, save_checkpoint
from ...loading.registry import resolve_model
from ...models.layers import Dropout
from ...models.ocr.labels import LabelEncoder
from ..datasets.open import open_datasets, read_books
from ..datasets.samples import DataError
from ..evaluation.run import evaluate
from ..jobs import FaultHook
from ..ocr import MangaOcrProcessor
from . import output, plot
from .batches import Labelled, Loader, Order
from .optimizer import make_optimizer, schedule
from .settings import TrainSettings
from .step import Stepper, add, global_norm


class TrainingError(MangaOcrError):
    """The run cannot go on; the message says why and what was kept."""


class TrainCallback:
    """What a run reports; each method does nothing unless overridden."""

    def on_start(self, start: int, total: int, info: dict) -> None:
        """Training from step ``start`` to ``total``; ``info`` as the run record has it."""

    def on_step(self, step: int, metrics: dict) -> None:
        """Update ``step`` (1-based) done."""

    def on_validation(self, step: int, summary: dict) -> None:
        """Validation after ``step`` updates."""

    def on_message(self, message: str) -> None:
        """Something the user should read (a bad sample left out, a checkpoint kept)."""


@dataclass
class TrainResult:
    steps: int
    final_loss: float | None
    best: dict | None
    output: Path
    peak_memory: int


def train(settings: TrainSettings, callback: TrainCallback | None = None, ranks: Ranks | None = None) -> TrainResult:
    """Run ``settings``; see the module docstring. Raises ``TrainingError``, ``DataError`` or
    ``OutputError`` with a message that names the problem."""
    callback = callback or TrainCallback()
    settings.check()
    ranks = ranks or Ranks()
    if settings.batch_size % (settings.grad_accum * ranks.size):
        raise TrainingError(f"the global batch of {settings.batch_size} cannot be split into {settings.grad_accum} "
                            f"micro-batch(es) over {ranks.size} rank(s): make --batch-size a multiple of "
                            f"{settings.grad_accum * ranks.size}")  # fmt: skip
    folder = Path(settings.output).expanduser()
    _check_not_inside(settings.model, folder)
    checkpoint = _trainable(settings.model)
    model, config = checkpoint.model, checkpoint.config
    max_length = settings.max_length or config.generation.max_length
    if max_length > config.decoder.max_position_embeddings:
        raise TrainingError(f"labels of {max_length} tokens need {max_length} decoder positions; the model has "
                            f"{config.decoder.max_position_embeddings}")  # fmt: skip
    if settings.dropout is not None:
        model.set_dropout(settings.dropout)
    if settings.checkpoint_encoder and any(m.p > 0 for _, m in model.encoder.named_modules() if isinstance(m, Dropout)):
        raise TrainingError("--checkpoint-encoder recomputes the encoder in the backward pass, where dropout would "
                            "draw another mask: use it with an encoder without dropout (--dropout off)")  # fmt: skip
    books = read_books(settings.books) if settings.books else None
    val_books = read_books(settings.val_books) if settings.val_books else None
    train_sets = open_datasets(settings.train, books, settings.skip_bad)
    val_sets = open_datasets(settings.val, val_books, settings.skip_bad) if settings.val else []
    for dataset in train_sets + val_sets:
        for message in dataset.skipped:
            callback.on_message(f"left out: {message}")
    encoder = LabelEncoder(checkpoint.vocab)
    data = Labelled.make([s for d in train_sets for s in d.samples], encoder, max_length, settings.skip_bad)
    for message in data.left_out:
        callback.on_message(f"left out: {message}")
    val_samples = [s for d in val_sets for s in d.samples]
    if ranks.rank == 0:
        val_samples = _readable(val_samples, settings.skip_bad, callback)
    try:
        order = Order([len(ids) for ids in data.labels], settings.batch_size, settings.seed, settings.shuffle)
    except ValueError as e:
        raise TrainingError(str(e)) from None
    total = settings.steps or math.ceil(settings.epochs * order.per_epoch)
    left = len(data) - order.per_epoch * settings.batch_size
    if left:
        which = "the last ones in file order, every epoch" if not settings.shuffle else "others each epoch"
        callback.on_message(f"{left} sample(s) sit out each epoch ({len(data)} is not a multiple of the batch of "
                            f"{settings.batch_size}; {which})")  # fmt: skip
    data_list = json.dumps([[s.id, s.text] for s in data.samples], ensure_ascii=False)
    ranks.agree("the training data", data_list)
    identity = {**settings.identity(), "data": hashlib.sha256(data_list.encode("utf-8", "surrogatepass")).hexdigest()}
    lock = output.run_lock(folder)
    resumable, done, problem = False, False, ""
    if ranks.rank == 0:
        try:
            lock.acquire()  # one run at a time in DIR, for the whole run
            resumable = output.claim(folder, identity, settings.resume, settings.force)
            record = output.read_record(folder) if resumable else None
            done = bool(record and record.get("status") == "done")
        except (output.OutputError, LockedError) as e:
            problem = str(e)
        except OSError as e:
            problem = f"{folder}: {e.strerror or e}"
    verdict = ranks.gather([int(resumable), int(bool(problem)), int(done)])[0]
    if verdict[1]:
        lock.release()
        raise output.OutputError(problem or f"{folder}: refused by rank 0 (its message names why)")
    resumable, done = bool(verdict[0]), bool(verdict[2])
    try:
        return _train(settings, callback, ranks, folder, checkpoint, data, order, total, identity, resumable, done,
                      encoder, max_length, val_samples, train_sets, val_sets)  # fmt: skip
    finally:
        lock.release()


def _train(settings, callback, ranks, folder, checkpoint, data, order, total, identity, resumable, done, encoder,
           max_length, val_samples, train_sets, val_sets) -> TrainResult:  # fmt: skip
    model, config = checkpoint.model, checkpoint.config
    info = {
        "identity": identity,
        "settings": dict(vars(settings)),
        "ranks": ranks.size,
        "total_steps": total,
        "batches_per_epoch": order.per_epoch,
        "samples": len(data),
        "truncated_labels": data.truncated,
        "max_length": max_length,
        "train": [d.describe() for d in train_sets],
        "val": [d.describe() for d in val_sets],
    }
    if done:  # a finished run: nothing to do, nothing rewritten
        callback.on_message(f"the run in {folder} is done ({total} steps); nothing to do")
        record = output.read_record(folder) or {}
        return TrainResult(total, None, record.get("best"), folder, 0)
    if ranks.rank == 0:
        _or_fail(lambda: output.write_record(folder, {**info, "status": "running"}), f"{folder / output.RECORD}")
        output.recover_best(folder)
    ranks.barrier()
    ranks.check_shared([folder])

    model.train()
    if settings.freeze == "encoder":
        model.encoder.freeze()
    elif settings.freeze == "decoder":
        model.decoder.freeze()
    model.encoder.checkpoint_layers = settings.checkpoint_encoder
    optimizer = make_optimizer(
        settings.optimizer, schedule(settings.lr, settings.lr_schedule, settings.warmup, total), settings.weight_decay
    )
    optimizer.init(model.trainable_parameters())
    start, best, validated = 0, None, True
    if resumable:
        state = output.load_state(folder, model, optimizer)
        start, best, validated = int(state["step"]), state.get("best"), state.get("validated", True)
        if ranks.rank == 0:
            _or_fail(lambda: output.resumed_metrics(folder, start, validated), f"{folder / output.METRICS}")
        callback.on_message(f"resumed at step {start} of {total}")
    elif settings.resume:
        if ranks.rank == 0:  # a run killed before its first save: its lines go
            _or_fail(lambda: output.resumed_metrics(folder, 0), f"{folder / output.METRICS}")
        callback.on_message("no state was saved yet: starting at step 1")
    run = _Run(settings, folder, checkpoint, optimizer, ranks, callback, val_samples, best)
    run.saved_step = start or None
    if start >= total:  # killed after the last step: validate if that was cut short, write the model
        if val_samples and not validated:
            run.validate(total)
            run.mark_validated(total)
        run.finish(total)
        callback.on_message(f"the run is done ({total} steps); its model is in {folder}")
        return TrainResult(total, None, run.best, folder, mx.get_peak_memory())
    stepper = Stepper(model, optimizer, settings.max_grad_norm, ranks.group)
    loader = Loader(data, order, checkpoint.image_processor, encoder.pad_id, config.generation.decoder_start_token_id,
                    max_length, settings.grad_accum, ranks.rank, ranks.size, settings.augment, settings.seed,
                    settings.skip_bad, workers=settings.workers)  # fmt: skip
    callback.on_start(start, total, info)
    loss = None
    pending = None  # a save waits for the next step's loss: a state is kept only once its loss is finite
    try:
        step = start
        while step < total:
            began = time.perf_counter()
            micro = loader.micro_batches_of(step)
            for m in micro:
                for message in m.bad:
                    callback.on_message(f"left out at step {step + 1}: {message}")
            tokens = _sum_over_ranks(sum(m.tokens for m in micro), ranks)
            if tokens == 0:
                if pending is not None:
                    run.save(pending)
                raise TrainingError(f"step {step + 1}: every sample of the batch is bad; nothing to learn from")
            grads, loss_share = None, mx.array(0.0)
            for index, m in enumerate(micro):
                mx.random.seed(_dropout_seed(settings.seed, step, ranks.rank, index))
                part, g = stepper.gradients(m.pixels, m.decoder_inputs, m.labels, tokens)
                grads, loss_share = add(g, grads), loss_share + part
                mx.eval(grads, loss_share)
            loss = _sum_over_ranks(loss_share.item(), ranks, floating=True)
            if not math.isfinite(loss):
                run.diverged(step, f"loss {loss}")
            grads = stepper.summed(grads)
            norm_array = global_norm(grads)
            norm = norm_array.item()
            if not math.isfinite(norm):
                run.diverged(step, f"gradient norm {norm}")
            if pending is not None:
                run.save(pending)
                pending = None
            stepper.update(grads, norm_array)  # the norm computed once, for the check and the clipping
            mx.eval(model.parameters(), optimizer.state)
            step += 1
            seconds = time.perf_counter() - began
            metrics = {"step": step, "loss": round(loss, 6), "lr": optimizer.state["learning_rate"].item(),
                       "grad_norm": round(norm, 6), "epoch": order.epoch_of(step - 1),
                       "samples_per_second": round(settings.batch_size / seconds, 3)}  # fmt: skip
            run.log(metrics)
            callback.on_step(step, metrics)
            last = step == total
            validating = bool(val_samples) and ((settings.eval_every and step % settings.eval_every == 0) or last)
            if last:  # before validating: a validation cut short is done again by --resume
                run.save(step, validated=not validating)
            elif settings.save_every and step % settings.save_every == 0:
                pending = step
            if validating:
                run.validate(step)
                if last:
                    run.mark_validated(step)
    finally:
        loader.close()
    run.finish(total)
    return TrainResult(total, loss, run.best, folder, mx.get_peak_memory())


def _or_fail(do, what: str) -> None:
    try:
        do()
    except OSError as e:
        raise TrainingError(f"cannot write {what}: {e.strerror or e}") from None


def _check_not_inside(model: str, folder: Path) -> None:
    """Refuse a run whose output would hold its own source model (the model folder, or one inside it)."""
    source = Path(model).expanduser()
    if not source.exists():
        return
    source, out = source.resolve(), folder.resolve()
    if source == out or out in source.parents:
        raise TrainingError(f"--model {model} is inside --output {folder}: the run would replace the model it "
                            "starts from; give another --output")  # fmt: skip


def _readable(samples: list, skip_bad: bool, callback: TrainCallback) -> list:
    """The validation samples whose image loads: a bad one stops the run before it starts (or,
    with ``skip_bad``, is left out and named), never at a validation mid-run."""
    kept = []
    for sample in samples:
        try:
            sample.image()
        except DataError as e:
            if not skip_bad:
                raise
            callback.on_message(f"left out of validation: {e}")
            continue
        kept.append(sample)
    return kept


def _trainable(source: str) -> Checkpoint:
    """The model in float32; a quantized model cannot be trained and is refused."""
    checkpoint = load_checkpoint(resolve_model("ocr", source))
    if checkpoint.config.quantization:
        raise TrainingError(f"{checkpoint.source} is quantized ({checkpoint.config.quantization}); training needs "
                            "float weights: fine-tune the float model and quantize the result")  # fmt: skip
    if checkpoint.config.dtype != "float32":
        checkpoint = load_checkpoint(checkpoint.source, dtype="float32")  # trained in float32
    return checkpoint


def _dropout_seed(seed: int, step: int, rank: int, micro_batch: int) -> int:
    """Dropout's random state for one micro-batch: a function of the run's seed, the step, the
    rank and the micro-batch, so a resumed run draws what the uninterrupted run drew."""
    return int(np.random.default_rng([seed, step, rank, micro_batch]).integers(2**62))


def _sum_over_ranks(value, ranks: Ranks, floating: bool = False):
    if ranks.size == 1:
        return value
    dtype = mx.float32 if floating else mx.int32
    total = mx.distributed.all_sum(mx.array(value, dtype=dtype), group=ranks.group, stream=mx.cpu)
    return total.item()


class _Run:
    """The writes of one run (rank 0 only): metrics, validation, checkpoints, the final model."""

    def __init__(self, settings: TrainSettings, folder: Path, checkpoint: Checkpoint, optimizer, ranks: Ranks,
                 callback: TrainCallback, val_samples, best: dict | None):  # fmt: skip
        self.settings, self.folder, self.checkpoint, self.optimizer = settings, folder, checkpoint, optimizer
        self.ranks, self.callback, self.val_samples, self.best = ranks, callback, val_samples, best
        self.writer = ranks.rank == 0
        self.saved_step: int | None = None
        self.fault = FaultHook(ranks.rank)  # test-only: MLX_MANGAOCR_TEST_FAULT=RANK:N kills after N saves

    def log(self, metrics: dict) -> None:
        if self.writer:

            def append():
                with open(self.folder / output.METRICS, "a", encoding="utf-8") as f:
                    f.write(json.dumps(metrics) + "\n")

            self.write(append, f"{self.folder / output.METRICS}")

    def validate(self, step: int) -> None:
        if not self.writer:
            return
        model = self.checkpoint.model
        model.eval()
        try:
            processor = MangaOcrProcessor(self.checkpoint)
            result = evaluate([("val", processor)], self.val_samples, batch_size=self.settings.val_batch_size,
                              decoding={"num_beams": 1}, skip_bad=self.settings.skip_bad)  # fmt: skip
        finally:
            model.train()
        summary = result.summaries[0]
        line = {"step": step, "val_cer": summary["cer"], "val_exact_match": summary["exact_match"],
                "val_samples": summary["samples"]}  # fmt: skip
        if self.best is None or summary["cer"] < self.best["val_cer"]:
            self.write(lambda: output.write_model(self.folder / output.BEST,
                                                  lambda path: save_checkpoint(self.checkpoint, path)),
                       f"the best model (step {step}) in {self.folder / output.BEST}")  # fmt: skip
            self.best = dict(line)
        self.log(line)
        self.callback.on_validation(step, summary)

    def write(self, do, what: str) -> None:
        try:
            do()
        except OSError as e:
            kept = f"the state of step {self.saved_step} is kept" if self.saved_step else "no state was saved yet"
            raise TrainingError(f"cannot write {what}: {e.strerror or e}; {kept}") from None

    def mark_validated(self, step: int) -> None:
        """The last step's validation is done: the state records it, with the best so far."""
        if self.writer:
            self.write(lambda: output.update_state(self.folder, best=self.best, validated=True),
                       f"{self.folder / output.RESUME / 'state.json'}")  # fmt: skip

    def save(self, step: int, validated: bool = True) -> None:
        if self.writer:
            try:
                extra = {"best": self.best, "validated": validated}
                output.save_state(self.folder, step, self.checkpoint.model, self.optimizer, extra)
            except OSError as e:
                kept = f"the state of step {self.saved_step} is kept" if self.saved_step else "no state was saved yet"
                raise TrainingError(f"cannot save the state of step {step} in {self.folder / output.RESUME}: "
                                    f"{e.strerror or e}; {kept}") from None  # fmt: skip
            self.saved_step = step
        self.ranks.barrier()
        self.fault()

    def diverged(self, step: int, what: str) -> None:
        """The loss (or gradient) of update ``step + 1``, computed with the weights of ``step``, is
        not finite: stop, keeping the last state saved (whose next loss was finite)."""
        kept = f"the state after step {self.saved_step} is kept" if self.saved_step else "no state was saved"
        raise TrainingError(f"the loss diverged at step {step + 1} ({what}); {kept}. To try a lower --lr or a "
                            "--warmup, use another --output (--force would start over, replacing this run's "
                            "files)")  # fmt: skip

    def finish(self, total: int) -> None:
        if self.writer:
            self.write(lambda: output.write_final(self.folder, lambda path: save_checkpoint(self.checkpoint, path)),
                       f"the final model in {self.folder}")  # fmt: skip
            self.write(self.write_plot, f"{self.folder / output.PLOT}")
            record = output.read_record(self.folder) or {}
            record.update(status="done", steps_done=total, best=self.best, peak_memory_bytes=mx.get_peak_memory())
            self.write(lambda: output.write_record(self.folder, {k: v for k, v in record.items() if k != "format"}),
                       f"{self.folder / output.RECORD}")  # fmt: skip
        self.ranks.barrier()

    def write_plot(self) -> None:
        path = self.folder / output.METRICS
        lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        write_atomic(self.folder / output.PLOT, plot.render(lines))
