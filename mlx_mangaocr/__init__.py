"""manga-ocr (kha-white/manga-ocr-base) in MLX.

from mlx_mangaocr import load_ocr
ocr = load_ocr()                                       # the converted default model, or a folder / hub id
text = ocr.process_image("page.png")                   # manga-ocr's default: 4-beam search
text = ocr.process_image("page.png", num_beams=1)      # greedy

The package reads in layers, each importing only the ones below it (``import-linter`` checks it):
``frontends`` (command line, watch, clipboard, the drop-in) > ``pipelines`` (crops, pages,
volumes, the sharded job) > ``engine`` (search, steppers, scheduler, chunks) > ``loading``
(checkpoints, the registry of model kinds) > ``models`` (OCR model, detector) > ``core`` (errors,
images, names, files, locks, ranks). The names below are loaded on first use.
"""

import threading

from ._moved import install
from .core.blas import load_openblas

load_openblas()  # must run before the first `import mlx`
install(__name__)  # the module paths of before the layers, kept (_moved.py)

# public name -> the module that defines it (imported on first use: `import mlx_mangaocr` stays light
# and the package itself imports no front end)
_EXPORTS = {
    "Block": "pipelines.pages",
    "Page": "pipelines.pages",
    "PageReader": "pipelines.pages",
    "load_page_reader": "pipelines.pages",
    "Detection": "models.detection.postprocess",
    "Detector": "pipelines.detect",
    "load_detector": "pipelines.detect",
    "MangaOcrProcessor": "pipelines.ocr",
    "Recognition": "pipelines.ocr",
    "load_ocr": "pipelines.ocr",
    "load_mlx_processor": "pipelines.ocr",
    "post_process": "models.ocr.text",
    "InvalidImageError": "core.errors",
    "MangaOcrError": "core.errors",
    "ModelLoadError": "core.errors",
    "MangaOcr": "frontends.dropin",
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


_LOADING = threading.RLock()  # one thread at a time imports: two threads taking module locks in turn deadlock


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mlx_mangaocr' has no attribute {name!r}")
    import importlib

    with _LOADING:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
