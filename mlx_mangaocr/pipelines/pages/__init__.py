"""Whole pages: detection, clean-up, reading order, crops and batched OCR; volumes to ``.mokuro``."""

from .page import Block, Page
from .reader import PageReader, load_page_reader

__all__ = ["Block", "Page", "PageReader", "load_page_reader"]
