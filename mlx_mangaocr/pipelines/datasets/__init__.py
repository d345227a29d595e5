"""Labelled crops from every source manga OCR data comes in, through one interface that eval and
training share: ``open_dataset(PATH)`` gives a ``Dataset`` of ``Sample`` (id, text, and an image
read only when asked for).

- ``.jsonl``: ``{"image": PATH, "text": STR}`` a line (``listed``);
- ``.csv``: a header with ``image`` and ``text`` columns (``listed``);
- a folder with ``labels.jsonl``: ``mlx-mangaocr synth`` output (``listed``);
- a folder with ``books.txt``: Manga109-s (``manga109``);
- ``.mokuro``: a volume's blocks, cut from its pages (``mokuro``).
"""

from .open import FORMS, open_dataset, open_datasets, read_books
from .samples import DataError, Dataset, Problems, Sample

__all__ = ["FORMS", "DataError", "Dataset", "Problems", "Sample", "open_dataset", "open_datasets", "read_books"]
