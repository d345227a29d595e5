"""Evaluation: the samples of some datasets through one or several OCR models, every model on the
same samples in one run, each with continuous batching (``MangaOcrProcessor.recognize_stream``).

A sample whose image cannot be read is bad data: it stops the run (``DataError``), or with
``skip_bad`` it is left out for every model and named through the callback."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image

from ...core.errors import InvalidImageError
from ...engine.chunks import pixel_chunks
from ..datasets.samples import DataError, Sample
from .normalization import normalizer
from .scores import Scores, score


class EvalCallback:
    """What an evaluation reports; each method does nothing unless overridden."""

    def on_model(self, name: str, index: int, count: int) -> None:
        """Model ``index`` of ``count`` starts."""

    def on_skip(self, message: str) -> None:
        """A sample left out (``skip_bad``), named."""

    def on_advance(self, count: int) -> None:
        """``count`` more samples done (read or left out)."""


@dataclass
class EvalResult:
    """One summary per model (``Scores.summary`` plus ``model``, ``normalize``, ``seconds``,
    ``samples_per_second``), the per-sample records of every model, and the samples left out."""

    summaries: list[dict]
    records: list[dict]
    skipped: list[str]


def evaluate(models: list[tuple[str, object]], samples: list[Sample], normalize: str = "manga-ocr",
             batch_size: int = 16, decoding: dict | None = None, skip_bad: bool = False,
             callback: EvalCallback | None = None) -> EvalResult:  # fmt: skip
    """Read ``samples`` with each ``(name, processor)`` of ``models`` and score the texts.

    ``normalize`` names the normalization (``normalization.NORMALIZERS``); ``decoding`` the
    decoding keywords (``{"num_beams": 1}`` for greedy); ``batch_size`` images decode together.
    Records hold id, reference and prediction (normalized), cer, confidence, vertical and model."""
    callback = callback or EvalCallback()
    reference_of, prediction_of = normalizer(normalize)
    references = [reference_of(s.text) for s in samples]
    bad: dict[int, str] = {}
    summaries, records = [], []
    for number, (name, processor) in enumerate(models):
        callback.on_model(name, number, len(models))
        scores = Scores()
        began = time.perf_counter()
        done = 0
        for index, vertical, result in _recognized(processor, samples, bad, batch_size, decoding or {}, skip_bad,
                                                   callback):  # fmt: skip
            s = score(references[index], prediction_of(result.text), vertical)
            scores.add(s)
            records.append({"model": name, "id": samples[index].id, "reference": s.reference,
                            "prediction": s.prediction, "cer": round(s.cer, 6),
                            "confidence": round(result.confidence, 4), "vertical": vertical})  # fmt: skip
            done += 1
            callback.on_advance(1)
        seconds = time.perf_counter() - began
        summary = {"model": name, "normalize": normalize, **scores.summary(), "skipped": len(bad)}
        summary.update(seconds=round(seconds, 3), samples_per_second=round(done / seconds, 3) if seconds else None)
        summaries.append(summary)
    return EvalResult(summaries, records, list(bad.values()))


def score_predictions(labels: list[str], predictions: list[str], vertical: list[bool],
                      normalize: str = "manga-ocr") -> dict:  # fmt: skip
    """The summary of predictions made elsewhere (another OCR), scored as ``evaluate`` scores."""
    reference_of, prediction_of = normalizer(normalize)
    scores = Scores()
    for label, prediction, tall in zip(labels, predictions, vertical, strict=True):
        scores.add(score(reference_of(label), prediction_of(prediction), tall))
    return {"normalize": normalize, **scores.summary()}


def _recognized(processor, samples: list[Sample], bad: dict[int, str], batch_size: int, decoding: dict,
                skip_bad: bool, callback: EvalCallback) -> Iterator[tuple[int, bool, object]]:  # fmt: skip
    """(sample index, vertical, Recognition) of every sample not known bad, in order."""
    order: list[tuple[int, bool]] = []  # the samples handed to the chunker, in order

    def leave_out(index: int, message: str) -> None:
        if not skip_bad:
            raise DataError(message)
        bad[index] = message
        callback.on_skip(message)
        callback.on_advance(1)

    def images() -> Iterator[Image.Image]:
        for index, sample in enumerate(samples):
            if index in bad:
                callback.on_advance(1)
                continue
            try:
                image = sample.image()
            except DataError as e:
                leave_out(index, str(e))
                continue
            order.append((index, image.height > image.width))
            yield image

    accepted: list[tuple[int, bool]] = []

    def seen(position: int, error: InvalidImageError | None) -> None:
        index, vertical = order[position]
        if error is None:
            accepted.append((index, vertical))
        else:
            leave_out(index, f"{samples[index].where}: {error}")

    preprocess: Callable = processor.image_processor
    chunks = pixel_chunks(images(), batch_size, preprocess, seen)
    for position, result in enumerate(processor.recognize_stream(chunks, batch_size, **decoding)):
        index, vertical = accepted[position]
        yield index, vertical, result
