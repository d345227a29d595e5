"""The app-facing API: ``load_mlx_processor(path).process_image(img)``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from ..core.images import ImageInput, check_many
from ..engine.chunks import pixel_chunks
from ..engine.decoding import decode_chunks
from ..engine.scheduler import check_batch_size, check_scheduler
from ..engine.search import DecodeStats
from ..engine.steppers import generate
from ..loading.ocr import Checkpoint, load_checkpoint
from ..loading.registry import resolve_model
from ..models.ocr.text import post_process


@dataclass(frozen=True)
class Recognition:
    """One image's result: the text as manga-ocr prints it, the token ids (start token to end
    token) and a confidence score, the mean probability of the generated tokens (0 to 1)."""

    text: str
    ids: list[int]
    confidence: float


class MangaOcrProcessor:
    """Runs manga-ocr on images: preprocessing, the MLX model, decoding and post-processing.

    Decoding follows the generation settings stored in the checkpoint unless told otherwise; for
    manga-ocr-base that is upstream's 4-beam search (``num_beams=4, no_repeat_ngram_size=3,
    length_penalty=2.0, early_stopping=True, max_length=300``). Every decoding keyword means
    what it means to transformers ``generate`` and overrides only itself: ``num_beams=1`` gives
    greedy decoding and keeps the checkpoint's ``no_repeat_ngram_size``.

    ``compile_step`` runs the decoder step compiled with ``mx.compile`` over fixed shapes (the
    default; same token ids as the uncompiled step, which ``compile_step=False`` selects).

    ``device`` (``mx.cpu``, ``mx.gpu`` or None for MLX's default device) is where its MLX work runs.

    ``scheduler`` is how the batch forms (``process_images``, ``iter_images``, ``recognize``,
    ``recognize_pixels``) keep the decoder busy: ``"continuous"`` (the default) starts the next
    image in a row as soon as that row's image is done; ``"static"`` decodes each batch until its
    longest image is done. Both give every image the ids it gets alone; ``stats`` counts the
    decoder row-steps each ran.

    One processor may be shared by several threads: the MLX work of each call runs under a lock,
    one call at a time (preprocessing and post-processing run in parallel).
    """

    def __init__(
        self,
        checkpoint: Checkpoint,
        compile_step: bool = True,
        device: mx.Device | None = None,
        scheduler: str = "continuous",
    ):
        self.checkpoint = checkpoint
        self.compile_step = compile_step
        self.scheduler = check_scheduler(scheduler)
        self.stats = DecodeStats()  # decoder work done so far, counted in row-steps
        self.device = device
        self.model = checkpoint.model
        self.config = checkpoint.config
        self.vocab = checkpoint.vocab
        self.image_processor = checkpoint.image_processor
        self._lock = threading.RLock()  # MLX graphs, the compiled step and its trace: one thread at a time

    @contextlib.contextmanager
    def _running(self):
        """Hold the lock, on ``device`` when one is set: every MLX call goes through here."""
        with self._lock, mx.stream(self.device) if self.device is not None else contextlib.nullcontext():
            yield

    @property
    def generation_config(self):
        """The checkpoint's default decoding settings."""
        return self.config.generation

    def pixels(self, images: list[ImageInput]) -> mx.array:
        """Images -> preprocessed pixels (B, H, W, 3) in the model's dtype, not yet evaluated."""
        return self._to_device(self.image_processor.batch(images))

    def _to_device(self, pixels: np.ndarray) -> mx.array:
        with self._running():
            return mx.array(pixels).astype(self.model.encoder.layernorm.weight.dtype)

    def _decode_chunks(
        self, chunks: Iterable[np.ndarray], decoding: dict, batch_size: int, scheduler: str | None, confidence: bool
    ) -> Iterator[tuple[list[int], float | None]]:
        """(ids, confidence) for every image of ``chunks``, in input order (``engine.decoding``)."""
        settings = self.config.generation.updated(**decoding)
        scheduler = check_scheduler(scheduler or self.scheduler)
        return decode_chunks(self.model, chunks, settings, batch_size, scheduler, self.compile_step, self.stats,
                             confidence, self._running, self._to_device)  # fmt: skip

    def _pixel_chunks(self, images: Iterable[ImageInput], batch_size: int, method: str) -> Iterator[np.ndarray]:
        """Preprocessed pixels, ``batch_size`` images at a time, read as they are needed."""
        check_many(images, method)
        return pixel_chunks(images, batch_size, self.image_processor)

    def generate_from_pixels(self, pixels: mx.array, **decoding) -> list[list[int]]:
        """Token ids (start token to end token) for preprocessed pixels, decoded as one static batch."""
        settings = self.config.generation.updated(**decoding)
        with self._running():
            return generate(self.model, self.model.encode(pixels), settings, self.compile_step, self.stats)

    def recognize_stream(
        self, chunks: Iterable[np.ndarray], batch_size: int = 16, scheduler: str | None = None, **decoding
    ) -> Iterator[Recognition]:
        """Recognitions, in input order, of preprocessed pixels that come in chunks of at most
        ``batch_size`` images (B, H, W, 3); each chunk is read when the decoder has room for it."""
        batch_size = check_batch_size(batch_size)
        for ids, score in self._decode_chunks(chunks, decoding, batch_size, scheduler, confidence=True):
            yield Recognition(self.decode(ids), ids, score)

    def recognize_pixels(
        self, pixels: np.ndarray | mx.array, batch_size: int | None = None, scheduler: str | None = None, **decoding
    ) -> list[Recognition]:
        """Texts, ids and confidences for preprocessed pixels (B, H, W, 3), ``batch_size`` at a
        time (default: all of them together) through ``scheduler`` (default: the processor's)."""
        batch_size = check_batch_size(len(pixels) if batch_size is None else batch_size)
        pixels = np.asarray(pixels)
        chunks = (pixels[start : start + batch_size] for start in range(0, len(pixels), batch_size))
        return list(self.recognize_stream(chunks, batch_size, scheduler, **decoding))

    def recognize(
        self, images: list[ImageInput], batch_size: int = 16, scheduler: str | None = None, **decoding
    ) -> list[Recognition]:
        """Like ``process_images``, with the token ids and a confidence score per image."""
        batch_size = check_batch_size(batch_size)
        return list(self.recognize_stream(self._pixel_chunks(images, batch_size, "recognize"), batch_size,
                                          scheduler, **decoding))  # fmt: skip

    def generate_ids(self, images: list[ImageInput], **decoding) -> list[list[int]]:
        """Token ids (start token to end token) for a list of images decoded together as one
        static batch.

        ``decoding``: num_beams, max_length, min_length, no_repeat_ngram_size, length_penalty,
        early_stopping.
        """
        check_many(images, "generate_ids")
        return self.generate_from_pixels(self.pixels(images), **decoding)

    def decode(self, ids: Iterable[int]) -> str:
        """Token ids -> the final text, post-processed as manga-ocr does."""
        return post_process(self.vocab.decode(ids))

    def process_image(self, image: ImageInput, **decoding) -> str:
        """OCR one image: a path, encoded bytes, a PIL image or a uint8 NumPy array.

        Returns the text exactly as manga-ocr prints it. Keyword options override the decoding
        settings (e.g. ``num_beams=1`` for greedy). Bad input raises ``InvalidImageError``.
        """
        return self.decode(self.generate_ids([image], **decoding)[0])

    def iter_ids(
        self, images: Iterable[ImageInput], batch_size: int = 16, scheduler: str | None = None, **decoding
    ) -> Iterator[list[int]]:
        """Token ids (start token to end token) of images from any iterable, in input order.
        ``batch_size`` images decode together: with the ``"continuous"`` scheduler each row takes
        the next image as soon as its image is done; with ``"static"`` each batch of
        ``batch_size`` runs to its longest image. Either way every image gets the ids it gets alone."""
        batch_size = check_batch_size(batch_size)
        chunks = self._pixel_chunks(images, batch_size, "iter_ids, iter_images and process_images")
        for ids, _ in self._decode_chunks(chunks, decoding, batch_size, scheduler, confidence=False):
            yield ids

    def iter_images(
        self, images: Iterable[ImageInput], batch_size: int = 16, scheduler: str | None = None, **decoding
    ) -> Iterator[str]:
        """OCR images from any iterable, ``batch_size`` decoding together (see ``iter_ids``),
        yielding texts in input order."""
        for ids in self.iter_ids(images, batch_size, scheduler, **decoding):
            yield self.decode(ids)

    def process_images(
        self, images: Iterable[ImageInput], batch_size: int = 16, scheduler: str | None = None, **decoding
    ) -> list[str]:
        """OCR many images, ``batch_size`` at a time (see ``iter_images``); the texts in input order."""
        return list(self.iter_images(images, batch_size=batch_size, scheduler=scheduler, **decoding))


def load_ocr(
    path_or_repo: str | Path | None = None,
    dtype: str | None = None,
    quantize: dict[str, int] | None = None,
    compile_step: bool = True,
    device: mx.Device | None = None,
    scheduler: str = "continuous",
) -> MangaOcrProcessor:
    """Load the OCR model from a converted MLX folder, a Hugging Face folder, or a hub id; None or
    ``"kha-white/manga-ocr-base"`` means the converted default model (converted on first use, see
    ``loading.registry``). ``load_mlx_processor`` is the same function under its first name.

    ``dtype`` casts the weights (float32, float16, bfloat16); the default keeps the folder's.
    ``quantize``, e.g. ``{"bits": 8, "group_size": 64}``, quantizes a float model on load.
    ``compile_step=False`` runs the decoder step uncompiled; ``device=mx.cpu`` runs on the CPU
    even where a GPU is the default; ``scheduler="static"`` batches as a static batch (see
    ``MangaOcrProcessor``).
    Raises ``ModelLoadError`` with the reason when the model cannot be loaded.
    """
    checkpoint = load_checkpoint(resolve_model("ocr", path_or_repo), dtype=dtype, quantize=quantize)
    return MangaOcrProcessor(checkpoint, compile_step=compile_step, device=device, scheduler=scheduler)


load_mlx_processor = load_ocr  # the first name, kept
