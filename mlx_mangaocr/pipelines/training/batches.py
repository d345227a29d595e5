"""What each step trains on: the samples' labels, the order of the global batches, each rank's
share, and the images prepared on background threads while the step runs.

The order is a function of the seed and the step alone, so a run resumed at step S reads what an
uninterrupted run reads from step S on, whatever the rank count:

- epoch ``e`` is ``default_rng([seed, e])``'s permutation of the samples, cut into windows of
  ``BUCKET_BATCHES`` batches; each window is sorted by label length and cut into batches, and the
  epoch's batches are shuffled: batches hold labels of like lengths, so little compute goes to
  padding. The samples left over (fewer than a batch) sit out that epoch.
- ``shuffle=False`` takes the samples in file order, in consecutive batches, with no bucketing.
- A sample's augmentation draws from ``default_rng([seed, epoch, index])``.
"""

from __future__ import annotations

import functools
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ...models.ocr.image_processing import OcrPreprocessor
from ...models.ocr.labels import LabelEncoder
from ...models.ocr.loss import IGNORE, label_array, shift_right
from ..augment import augment
from ..datasets.samples import DataError, Sample

BUCKET_BATCHES = 50  # batches sorted by length together
LENGTH_STEP = 8  # label arrays are padded to a multiple of this: few shapes to compile


@dataclass
class Labelled:
    """The samples with their label ids (``[CLS] ... [SEP]``, truncated to ``max_length``)."""

    samples: list[Sample]
    labels: list[list[int]]
    truncated: int  # labels cut at max_length, as manga-ocr's tokenizer call cuts them
    left_out: list[str]  # labels the tokenizer cannot take (``skip_bad``), named

    @classmethod
    def make(cls, samples: list[Sample], encoder: LabelEncoder, max_length: int, skip_bad: bool = False) -> Labelled:
        kept, labels, truncated, left_out = [], [], 0, []
        for sample in samples:
            try:
                ids, cut = encoder.encode(sample.text, max_length)
            except ValueError as e:  # a lone surrogate, a piece MeCab could not take
                if not skip_bad:
                    raise DataError(f"{sample.where}: the label cannot be tokenized: {e}", skippable=True) from None
                left_out.append(f"{sample.where}: the label cannot be tokenized: {e}")
                continue
            kept.append(sample)
            labels.append(ids)
            truncated += cut
        return cls(kept, labels, truncated, left_out)

    def __len__(self) -> int:
        return len(self.samples)


class Order:
    """The sample indices of global batch ``step`` (``batch_size`` of them)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, shuffle: bool):
        if len(lengths) < batch_size:
            raise ValueError(f"{len(lengths)} training samples are fewer than one batch of {batch_size}")
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.per_epoch = len(lengths) // batch_size

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch

    def batch(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.per_epoch)
        return self._epoch(epoch)[k]

    @functools.lru_cache(maxsize=2)  # noqa: B019 (one Order per run)
    def _epoch(self, epoch: int) -> np.ndarray:
        b, n = self.batch_size, self.per_epoch * self.batch_size
        if not self.shuffle:
            return np.arange(n).reshape(self.per_epoch, b)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.lengths))[:n]
        window = BUCKET_BATCHES * b
        chunks = np.split(order, range(window, n, window))
        parts = [chunk[np.argsort(self.lengths[chunk], kind="stable")] for chunk in chunks]
        batches = np.concatenate(parts).reshape(self.per_epoch, b)
        return batches[rng.permutation(self.per_epoch)]


@dataclass
class MicroBatch:
    pixels: np.ndarray  # (b, H, W, 3) float32
    decoder_inputs: np.ndarray  # (b, L) int32
    labels: np.ndarray  # (b, L) int32, IGNORE where masked
    bad: list[str]  # samples whose image could not be read (``skip_bad``): their labels are masked

    @property
    def tokens(self) -> int:
        return int((self.labels != IGNORE).sum())


def shares(indices: np.ndarray, micro_batches: int, rank: int, ranks: int) -> list[np.ndarray]:
    """This rank's part of each of the global batch's micro-batches."""
    per_micro = len(indices) // micro_batches
    per_rank = per_micro // ranks
    starts = [m * per_micro + rank * per_rank for m in range(micro_batches)]
    return [indices[start : start + per_rank] for start in starts]


class Loader:
    """Prepares the micro-batches of coming steps on background threads: each image read as
    ``MangaOcr`` reads it, augmented, resized and normalized exactly as at inference."""

    def __init__(self, data: Labelled, order: Order, preprocess: OcrPreprocessor, pad_id: int, start_id: int,
                 max_length: int, micro_batches: int, rank: int, ranks: int, augment_images: bool, seed: int,
                 skip_bad: bool, workers: int = 4, ahead: int = 2):  # fmt: skip
        self.data, self.order, self.preprocess = data, order, preprocess
        self.pad_id, self.start_id, self.max_length = pad_id, start_id, max_length
        self.micro_batches, self.rank, self.ranks = micro_batches, rank, ranks
        self.augment_images, self.seed, self.skip_bad = augment_images, seed, skip_bad
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mlx-mangaocr-data")
        self.ahead = ahead
        self.pending: dict[int, list[list[Future]]] = {}

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _image(self, index: int, epoch: int) -> np.ndarray | str:
        sample = self.data.samples[index]
        try:
            image = sample.image()
            if self.augment_images:
                image = augment(image, np.random.default_rng([self.seed, epoch, index]))
            return self.preprocess(image)
        except DataError as e:
            return str(e)
        except Exception as e:  # noqa: BLE001 - an image Pillow cannot decode or convert
            return f"{sample.where}: {e}"

    def _submit(self, step: int) -> None:
        if step in self.pending:
            return
        epoch = self.order.epoch_of(step)
        parts = shares(self.order.batch(step), self.micro_batches, self.rank, self.ranks)
        self.pending[step] = [[self.pool.submit(self._image, int(i), epoch) for i in part] for part in parts]

    def micro_batches_of(self, step: int) -> list[MicroBatch]:
        """This rank's micro-batches of ``step``; starts preparing the next steps."""
        self._submit(step)
        for ahead in range(1, self.ahead + 1):
            self._submit(step + ahead)
        futures = self.pending.pop(step)
        parts = shares(self.order.batch(step), self.micro_batches, self.rank, self.ranks)
        out = []
        for part, images in zip(parts, futures, strict=True):
            rows, pixels, bad = [], [], []
            results = [f.result() for f in images]
            blank = next((r for r in results if not isinstance(r, str)), None)
            for index, result in zip(part, results, strict=True):
                row = list(self.data.labels[int(index)])
                if isinstance(result, str):
                    if not self.skip_bad:
                        raise DataError(result, skippable=True)
                    bad.append(result)
                    row = []  # masked out: the sample contributes nothing
                    result = blank if blank is not None else np.zeros(self._shape(), np.float32)
                rows.append(row)
                pixels.append(result)
            length = -(-max(max(map(len, rows)), 1) // LENGTH_STEP) * LENGTH_STEP
            labels = label_array(rows, self.pad_id, min(length, self.max_length))
            out.append(MicroBatch(np.stack(pixels), shift_right(labels, self.pad_id, self.start_id), labels, bad))
        return out

    def _shape(self) -> tuple[int, int, int]:
        return (self.preprocess.height, self.preprocess.width, 3)
