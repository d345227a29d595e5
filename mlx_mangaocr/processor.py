"""The app-facing API: ``load_mlx_processor(path).process_image(img)``."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from .generate import generate, mean_token_probability
from .image_processing import ImageInput
from .loading import DEFAULT_MODEL, Checkpoint, load_checkpoint
from .text import post_process


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

    One processor may be shared by several threads: the MLX work of each call runs under a lock,
    one call at a time (preprocessing and post-processing run in parallel).
    """

    def __init__(self, checkpoint: Checkpoint, compile_step: bool = True, device: mx.Device | None = None):
        self.checkpoint = checkpoint
        self.compile_step = compile_step
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

    def _encode_and_generate(self, pixels: np.ndarray | mx.array, decoding: dict) -> tuple[mx.array, list[list[int]]]:
        """Encoder states and token ids for a batch of pixels; the caller is ``_running()``."""
        settings = self.config.generation.updated(**decoding)
        if isinstance(pixels, np.ndarray):
            pixels = self._to_device(pixels)
        hidden = self.model.encode(pixels)
        return hidden, generate(self.model, hidden, settings, compile_step=self.compile_step)

    def generate_from_pixels(self, pixels: mx.array, **decoding) -> list[list[int]]:
        """Token ids (start token to end token) for preprocessed pixels, decoded as one batch."""
        with self._running():
            return self._encode_and_generate(pixels, decoding)[1]

    def recognize_pixels(self, pixels: np.ndarray | mx.array, **decoding) -> list[Recognition]:
        """Texts, ids and confidences for preprocessed pixels (B, H, W, 3), decoded as one batch."""
        with self._running():
            hidden, rows = self._encode_and_generate(pixels, decoding)
            confidences = mean_token_probability(self.model, hidden, rows)
        return [Recognition(self.decode(ids), ids, c) for ids, c in zip(rows, confidences, strict=True)]

    def recognize(self, images: list[ImageInput], **decoding) -> list[Recognition]:
        """Like ``generate_ids``, with the texts and a confidence score per image."""
        return self.recognize_pixels(self.image_processor.batch(images), **decoding)

    def generate_ids(self, images: list[ImageInput], **decoding) -> list[list[int]]:
        """Token ids (start token to end token) for a list of images decoded together as a batch.

        ``decoding``: num_beams, max_length, min_length, no_repeat_ngram_size, length_penalty,
        early_stopping.
        """
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

    def iter_images(self, images: Iterable[ImageInput], batch_size: int = 8, **decoding) -> Iterator[str]:
        """OCR images from any iterable, ``batch_size`` at a time, yielding texts in order."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
        chunk: list[ImageInput] = []
        for image in images:
            chunk.append(image)
            if len(chunk) == batch_size:
                yield from (self.decode(ids) for ids in self.generate_ids(chunk, **decoding))
                chunk = []
        if chunk:
            yield from (self.decode(ids) for ids in self.generate_ids(chunk, **decoding))

    def process_images(self, images: Iterable[ImageInput], batch_size: int = 8, **decoding) -> list[str]:
        """OCR many images, ``batch_size`` at a time; returns the texts in input order."""
        return list(self.iter_images(images, batch_size=batch_size, **decoding))


def load_mlx_processor(
    path_or_repo: str | Path = DEFAULT_MODEL,
    dtype: str | None = None,
    quantize: dict[str, int] | None = None,
    compile_step: bool = True,
    device: mx.Device | None = None,
) -> MangaOcrProcessor:
    """Load a processor from a converted MLX folder, a Hugging Face folder, or a hub id.

    ``dtype`` casts the weights (float32, float16, bfloat16); the default keeps the folder's.
    ``quantize``, e.g. ``{"bits": 8, "group_size": 64}``, quantizes a float model on load.
    ``compile_step=False`` runs the decoder step uncompiled; ``device=mx.cpu`` runs on the CPU
    even where a GPU is the default (see ``MangaOcrProcessor``).
    Raises ``ModelLoadError`` with the reason when the model cannot be loaded.
    """
    checkpoint = load_checkpoint(path_or_repo, dtype=dtype, quantize=quantize)
    return MangaOcrProcessor(checkpoint, compile_step=compile_step, device=device)
