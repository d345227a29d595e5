"""manga-ocr (kha-white/manga-ocr-base) in MLX.

from mlx_mangaocr import load_mlx_processor
ocr = load_mlx_processor("kha-white/manga-ocr-base")   # or a converted folder
text = ocr.process_image("page.png")                   # manga-ocr's default: 4-beam search
text = ocr.process_image("page.png", num_beams=1)      # greedy
"""

from ._blas import load_openblas

load_openblas()  # must run before the first `import mlx`

from .detection import Detection, Detector, load_detector  # noqa: E402
from .dropin import MangaOcr  # noqa: E402
from .errors import InvalidImageError, MangaOcrError, ModelLoadError  # noqa: E402
from .ocr.processor import MangaOcrProcessor, Recognition, load_mlx_processor  # noqa: E402
from .ocr.text import post_process  # noqa: E402
from .pages import Block, Page, PageReader, load_page_reader  # noqa: E402

__all__ = [
    "Block",
    "Detection",
    "Detector",
    "InvalidImageError",
    "MangaOcr",
    "MangaOcrError",
    "MangaOcrProcessor",
    "ModelLoadError",
    "Page",
    "PageReader",
    "Recognition",
    "load_detector",
    "load_mlx_processor",
    "load_page_reader",
    "post_process",
]
__version__ = "0.1.0"
