"""Synthetic training data: labelled manga-style text crops drawn with Pillow, as manga-ocr's
synthetic generator made them with a browser (``mlx-mangaocr synth``).

One concern a module: ``charsets`` (vocabulary, kana, lengths), ``fonts`` (finding Japanese fonts,
missing glyphs), ``corpus`` (the text: wordfreq phrases, a corpus file, random characters),
``layout`` (furigana, tate-chū-yoko), ``render`` (glyphs to ink, vertical forms), ``backgrounds``
(pages, drawn tones, bubbles), ``generate`` (a sample, a set on disk), ``preview`` (a contact sheet).
"""

from .charsets import SynthError
from .fonts import FontFace, find_fonts
from .generate import Sample, Synthesizer, generate, prepare_output

__all__ = ["FontFace", "Sample", "SynthError", "Synthesizer", "find_fonts", "generate", "prepare_output"]
