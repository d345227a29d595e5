"""``MangaOcr``: manga-ocr's own class, on MLX, for code written against upstream.

    from mlx_mangaocr import MangaOcr        # or, through the alias: from manga_ocr import MangaOcr
    mocr = MangaOcr()                        # upstream's signature: (pretrained_model_name_or_path, force_cpu)
    text = mocr("bubble.png")                # a path, a PIL image of any mode, bytes or a NumPy array

This module is what ``mlx_mangaocr.compat.install()`` puts at ``manga_ocr.ocr``: ``post_process`` is
looked up here at call time, so code that replaces ``manga_ocr.ocr.post_process`` (as
GameSentenceMiner does) changes what every call returns, as upstream.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np

from ..core.errors import ModelLoadError
from ..core.images import ImageInput
from ..loading.ocr import DEFAULT_MODEL
from ..models.ocr.text import post_process
from ..pipelines.ocr import load_ocr

__all__ = ["MangaOcr", "post_process"]

# Upstream attributes with no MLX counterpart: what to use instead.
_NOT_HERE = {
    "_preprocess": "mocr.processor(image) gives the preprocessed pixels as a NumPy array (H, W, 3)",
    "device": "MLX runs on its default device (mx.default_device()), or the CPU with force_cpu=True",
}


class MangaOcr:
    """manga-ocr's ``MangaOcr`` on MLX: same constructor, same call, same strings.

    ``MangaOcr(pretrained_model_name_or_path="kha-white/manga-ocr-base", force_cpu=False)``: a hub
    id, a Hugging Face folder (as upstream) or a folder converted by ``mlx-mangaocr-convert``. The
    default hub id means the converted default model (``~/.cache/mlx-mangaocr/manga-ocr-base``,
    converted on first use). ``force_cpu=True`` runs MLX on its CPU device. Like upstream, the
    constructor reads one image once, so the first real call is not slowed by a warm-up.

    ``mocr(img_or_path)`` returns the text upstream returns: manga-ocr's decoding (the checkpoint's
    beam search, ``max_length=300``), then ``post_process`` as found in this module at call time.
    It takes a ``str``/``Path``, a PIL image of any mode, and also encoded bytes or a uint8 NumPy
    array; anything else raises ``InvalidImageError`` (a ``ValueError``, as upstream raises).
    An instance may be shared by threads.

    Attributes, with their MLX meaning:
      - ``model``: the MLX model (``mlx_mangaocr.models.ocr.model.MangaOcrModel``, an ``mlx.nn.Module``), not
        a torch module;
      - ``processor``: the image preprocessing; ``mocr.processor(image)`` gives (H, W, 3) float32
        pixels as a NumPy array (upstream: a transformers image processor giving torch tensors);
      - ``tokenizer``: the vocabulary; ``mocr.tokenizer.decode(ids)`` gives the text before
        ``post_process``, as upstream's ``decode(ids, skip_special_tokens=True)``;
      - ``ocr``: the ``MangaOcrProcessor`` behind it, for batches (``process_images``) and options.
    For offline use, convert once (``mlx-mangaocr-convert SOURCE -o FOLDER``) and pass the folder.
    """

    def __init__(self, pretrained_model_name_or_path: str | Path = DEFAULT_MODEL, force_cpu: bool = False):
        if pretrained_model_name_or_path is None:  # upstream cannot load None either
            raise ModelLoadError(f"a model is a folder or a hub id such as {DEFAULT_MODEL}, got None")
        self.ocr = load_ocr(pretrained_model_name_or_path, device=mx.cpu if force_cpu else None)
        self.model = self.ocr.model
        self.processor = self.ocr.image_processor
        self.tokenizer = self.ocr.vocab
        self(np.full((32, 32), 255, dtype=np.uint8))  # warm-up, as upstream (which reads its example image)

    def __call__(self, img_or_path: ImageInput) -> str:
        ids = self.ocr.generate_ids([img_or_path], max_length=300)[0]
        # A module global, so looked up per call: replacing manga_ocr.ocr.post_process takes effect.
        return post_process(self.tokenizer.decode(ids))

    def __getattr__(self, name: str):
        hint = _NOT_HERE.get(name, "its MLX parts are .model, .processor, .tokenizer and .ocr")
        raise AttributeError(f"mlx_mangaocr.MangaOcr (MLX) has no attribute {name!r}: {hint}")
