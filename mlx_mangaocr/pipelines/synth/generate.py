"""Labelled text crops in manga style, as manga-ocr made most of its training data, drawn with
Pillow: ``Synthesizer.sample(index)`` makes one, ``generate`` writes a set to a folder.

Every sample's randomness comes from ``np.random.default_rng([seed, index])``, never from global
state, so a set is the same bytes whatever the order or the number of threads (with the same fonts,
Pillow and FreeType)."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, features

from ...core.atomic_files import write_atomic
from ...core.files import load_json
from ..jobs import JobCallback
from . import backgrounds
from .charsets import SynthError, default_vocab, model_vocab
from .corpus import TextSource, read_corpus
from .fonts import FontCache, FontCharsets, FontFace, find_fonts, has_raqm
from .layout import furigana_of, label_of, markup
from .render import Style, TextRenderer

MAX_SIDE = 600  # longest side of a written crop, as upstream
VERTICAL_P = 0.7
UPRIGHT_P = 0.7
EFFECTS, EFFECT_P = ["outline", "shadow", "none"], [0.8, 0.15, 0.05]
BUBBLE_P = 0.7
OURS = {"images", "labels.jsonl", "synth.json", "preview.png"}  # what a synth run writes in OUT


@dataclass
class Sample:
    """One crop (grayscale) and its label record (``text`` is what the image shows, nothing more)."""

    image: Image.Image
    record: dict


class Synthesizer:
    """Makes samples. ``fonts``: font folders (default: the system's Japanese fonts); ``corpus``: a
    UTF-8 text file, one source a line (default: phrases of wordfreq words); ``backgrounds``: a
    folder of page images (default: drawn backgrounds); ``model``: a model folder or hub id whose
    vocab.txt the labels keep to (default: manga-ocr's character list). Raises ``SynthError`` (or
    ``ModelLoadError`` for ``model``) on bad input."""

    def __init__(self, seed: int = 0, fonts: list[str] | None = None, corpus: str | None = None,
                 backgrounds: str | None = None, model: str | None = None, vertical_p: float = VERTICAL_P,
                 vert_feature: bool = True, plain: bool = False):  # fmt: skip
        if not 0.0 <= vertical_p <= 1.0:
            raise SynthError(f"--vertical {vertical_p}: a probability, from 0 to 1")
        if not (isinstance(seed, int) and 0 <= seed < 2**63):
            raise SynthError(f"--seed {seed}: a whole number from 0 to 2**63 - 1")
        self.seed, self.vertical_p, self.plain = seed, vertical_p, plain
        self.vocab = model_vocab(model) if model else default_vocab()
        self.faces: list[FontFace] = find_fonts(fonts)
        lines = read_corpus(corpus, self.vocab) if corpus else None
        self.source = TextSource(self.vocab, lines)
        self.pages = backgrounds_files(backgrounds)
        self.charsets = FontCharsets(self.vocab)
        # a face that draws no visible character of the vocabulary cannot make a sample
        drawn = [f for f in self.faces if any(not c.isspace() for c in self.charsets.chars(f))]
        if not drawn:
            which = f"--model {model}'s vocab.txt" if model else "manga-ocr's character list"
            raise SynthError(f"no font draws any character of the vocabulary ({which}); check --fonts and --model")
        self.faces = drawn
        self.renderer = TextRenderer(FontCache(), has_raqm(), vert_feature)
        self.settings = {"seed": seed, "corpus": corpus or "wordfreq", "model": model or "manga-ocr vocab.csv",
                         "backgrounds": backgrounds, "vertical_p": vertical_p, "plain": plain,
                         "fonts": [[f.path, f.index] for f in self.faces], "pillow": Image.__version__,
                         "freetype": features.version("freetype2"), "raqm": has_raqm()}  # fmt: skip

    def sample(self, index: int) -> Sample:
        """Sample ``index``: the same image and record for the same seed, fonts and index."""
        rng = np.random.default_rng([self.seed, index])
        face = self.faces[int(rng.integers(len(self.faces)))]
        chars = self.charsets.chars(face)
        text, kind = self.source.sample(rng, chars)
        vertical = bool(rng.random() < self.vertical_p)
        lines = self.source.break_lines(text, rng)
        segments = markup(lines, vertical, rng, chars, furigana=not self.plain)
        style = Style(48, vertical, upright=bool(rng.random() < UPRIGHT_P), line_gap=float(rng.uniform(0.2, 0.7)),
                      letter_gap=float(rng.choice([0.0, 0.0, 0.0, 0.05, 0.1])))  # fmt: skip
        ink = self.renderer.render(face, segments, style)
        image, look = _plain(ink, rng) if self.plain else _compose(ink, rng, self.pages)
        record = {"image": "", "text": label_of(segments), "font": face.path, "font_index": face.index,
                  "vertical": vertical, "lines": lines, "furigana": furigana_of(segments),
                  "tcy": [s.text for line in segments for s in line if s.kind == "tcy"], "source": kind,
                  "upright": style.upright, **look, "width": image.width, "height": image.height}  # fmt: skip
        return Sample(image, record)


def backgrounds_files(folder: str | None) -> list[Path]:
    return backgrounds.background_files(folder) if folder else []


def _plain(ink: np.ndarray, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """The crop with ``plain``: black text on white, margins as a crop's without a bubble."""
    h, w = ink.shape
    short = min(h, w, 200)
    left, top, right, bottom = (int(round(rng.uniform(0.01, 0.2) * short)) + 2 for _ in range(4))
    image = np.full((h + top + bottom, w + left + right), 255, np.uint8)
    image[top : top + h, left : left + w] = 255 - ink
    return _fit(Image.fromarray(image)), {"outline": 0, "shadow": 0, "bubble": None, "inverted": False,
                                          "background": "white"}  # fmt: skip


def _fit(out: Image.Image) -> Image.Image:
    """``out`` scaled down to ``MAX_SIDE`` at most, as upstream writes its crops."""
    if max(out.size) > MAX_SIDE:
        s = MAX_SIDE / max(out.size)
        out = out.resize((max(1, round(out.width * s)), max(1, round(out.height * s))), Image.Resampling.LANCZOS)
    return out


def _compose(ink: np.ndarray, rng: np.random.Generator, pages: list[Path]) -> tuple[Image.Image, dict]:
    """The crop: background, bubble, outline or shadow, and the text, scaled to ``MAX_SIDE``; and
    what was chosen."""
    h, w = ink.shape
    short = min(h, w, 200)
    effect = str(rng.choice(EFFECTS, p=EFFECT_P))
    outline = int(rng.choice([1, 2, 3, 4, 8])) if effect == "outline" else 0
    shadow = int(rng.choice([2, 5, 10])) if effect == "shadow" else 0
    pad = outline + 2 * shadow + 2
    shape = None
    if rng.random() < BUBBLE_P:
        shape = "ellipse" if rng.random() < 0.35 else "rounded"
    inverted = shape is None and bool(rng.random() < 0.5)  # white text on black, as upstream: without a bubble
    # margins around the text: a bubble's, then the crop's (which may cut the bubble's edge)
    inner = [rng.uniform(0.07, 0.12) * short + pad for _ in range(4)]
    outer = [rng.uniform(0.01, 0.2) * short for _ in range(4)]
    box = (-inner[0], -inner[1], w + inner[2], h + inner[3])
    roundness = float(rng.uniform(0.3, 1.0))
    if shape:
        (bx0, by0, bx1, by1), radius = backgrounds.bubble_bounds(box, shape, roundness)
        left, top = max(-bx0 - outer[0] * 0.5, pad), max(-by0 - outer[1] * 0.5, pad)
        right, bottom = max(bx1 - w - outer[2] * 0.5, pad), max(by1 - h - outer[3] * 0.5, pad)
    else:
        left, top, right, bottom = (max(m, pad) for m in outer)
    left, top, right, bottom = (int(round(v)) for v in (left, top, right, bottom))
    height, width = h + top + bottom, w + left + right
    if pages:
        page = pages[int(rng.integers(len(pages)))]
        bg, kind = backgrounds.page_background(page, height, width, rng), f"page:{page.name}"
    else:
        bg, kind = backgrounds.drawn_background(height, width, rng)
    text_value = 255.0 if inverted else 0.0
    if shape is None or rng.random() < 0.5:
        bg = backgrounds.lower_contrast(bg, rng, light=not inverted)
    image = bg
    if shape:
        shifted = (bx0 + left, by0 + top, bx1 + left, by1 + top)
        fill, line = backgrounds.bubble(height, width, shifted, shape, radius, rng)
        image = image * (1 - fill) + 255 * fill
        image = image * (1 - line)
    mask = np.zeros((height, width), np.uint8)
    mask[top : top + h, left : left + w] = ink
    text = Image.fromarray(mask)
    if outline:
        halo = text
        for _ in range(outline):  # a 3x3 maximum per pixel of outline: cheaper than one big window
            halo = halo.filter(ImageFilter.MaxFilter(3))
        halo = np.asarray(halo.filter(ImageFilter.GaussianBlur(0.6)), np.float32) / 255
        image = image * (1 - halo) + (255 - text_value) * halo
    elif shadow:
        halo = np.asarray(text.filter(ImageFilter.GaussianBlur(shadow / 2)), np.float32) / 255
        halo = np.clip(halo * 2.5, 0, 1)
        colour = 255 - text_value if rng.random() < 0.8 else text_value
        image = image * (1 - halo) + colour * halo
    alpha = mask.astype(np.float32) / 255
    image = image * (1 - alpha) + text_value * alpha
    out = _fit(Image.fromarray(np.clip(np.rint(image), 0, 255).astype(np.uint8)))
    look = {"outline": outline, "shadow": shadow, "bubble": shape, "inverted": inverted, "background": kind}
    return out, look


STAGING = ".synth-new"  # where a run writes until it is done: a killed run leaves the earlier set whole


def is_synth_output(out: Path) -> bool:
    """Whether ``out`` holds a synth run's output: its ``synth.json`` records a seed and a count."""
    data = load_json(out / "synth.json")
    return isinstance(data, dict) and {"seed", "count"} <= data.keys()


def prepare_output(out: str | Path, force: bool, inputs: list[str | None] = ()) -> Path:
    """Check that ``out`` may take a new set: new, empty, or a previous synth output (recognised by
    its ``synth.json``), whose files the new set replaces when it is done. A folder holding anything
    else is refused unless ``force``, and even then its own ``images/``, ``labels.jsonl``,
    ``synth.json`` or ``preview.png`` are never replaced. ``inputs`` (the corpus, fonts and
    backgrounds) must not lie where the new set goes. Returns the staging folder, made empty.
    Raises ``SynthError``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SynthError(f"OUT {out}: a file, expected a folder (new, empty, or a previous synth output)")
    ours = out.is_dir() and is_synth_output(out)
    if out.is_dir() and not ours:
        foreign = sorted(p.name for p in out.iterdir() if p.name != STAGING)
        if foreign and not force:
            raise SynthError(f"OUT {out}: not empty and not a synth output (it holds {foreign[0]}); choose an empty "
                             "folder or pass --force")  # fmt: skip
        clash = [name for name in sorted(OURS) if (out / name).exists() or (out / name).is_symlink()]
        if clash:
            raise SynthError(f"OUT {out}: it holds {clash[0]}, which is not a synth output's and would be replaced; "
                             "choose another folder")  # fmt: skip
    for name in ("labels.jsonl", "synth.json", "preview.png"):
        path = out / name
        if ours and (path.is_symlink() or (path.exists() and not path.is_file())):
            raise SynthError(f"OUT {out}: {name} is not a regular file; remove it or choose another folder")
    replaced = out.resolve() / "images" if ours else None
    for given in inputs:
        if not given:
            continue
        where = Path(given).resolve()
        in_images = replaced is not None and (where == replaced or replaced in where.parents)
        if in_images or (where.parent == out.resolve() and where.name in OURS):
            raise SynthError(f"{given} lies in OUT {out}, whose images and labels a new set replaces: move it out")
    staging = out / STAGING
    try:
        if staging.is_dir() and not staging.is_symlink():
            shutil.rmtree(staging)  # what a killed run left
        (staging / "images").mkdir(parents=True)
    except OSError as e:
        raise SynthError(f"OUT {out}: cannot be written ({e.strerror or e})") from None
    return staging


def _publish(out: Path, staging: Path) -> None:
    """The new set in place of the earlier one: files first, then the images folder swapped."""
    old = out / "images"
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old)
    (staging / "images").replace(old)
    for name in ("synth.json", "preview.png", "labels.jsonl"):
        if (staging / name).exists():
            (staging / name).replace(out / name)
        else:
            (out / name).unlink(missing_ok=True)
    staging.rmdir()


def generate(out: str | Path, count: int, synth: Synthesizer, workers: int = 1, force: bool = False,
             preview: bool = False, callback: JobCallback | None = None,
             preview_samples: int = 48, inputs: list[str | None] = ()) -> list[dict]:  # fmt: skip
    """Write ``count`` samples to ``out``: ``images/NNNNNN.png`` and, at the end and atomically,
    ``labels.jsonl`` (one record a line, its ``image`` relative to ``out``), ``synth.json`` (the
    settings) and with ``preview`` a contact sheet ``preview.png``. ``workers`` threads make samples;
    the bytes do not depend on it. The set is made in ``out/.synth-new`` and moved into place when it
    is whole (``prepare_output``: an earlier set is replaced only then; ``inputs`` are checked against
    it). Reports through ``callback`` (on_start, on_advance). Returns the records."""
    if count < 1:
        raise SynthError(f"--count {count}: at least 1")
    out = Path(out)
    staging = prepare_output(out, force, inputs)
    digits = max(6, len(str(count - 1)))
    callback = callback or JobCallback()
    callback.on_start("synth", count, 0)

    def make(index: int) -> dict:
        sample = synth.sample(index)
        name = f"images/{index:0{digits}d}.png"
        sample.image.save(staging / name, format="PNG")
        sample.record["image"] = name
        return sample.record

    records: list[dict] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for start in range(0, count, 256):  # in batches: never a million futures at once
            for record in pool.map(make, range(start, min(count, start + 256))):
                records.append(record)
                callback.on_advance(1)
    try:
        write_atomic(staging / "synth.json", json.dumps({**synth.settings, "count": count}, ensure_ascii=False,
                                                        indent=1))  # fmt: skip
        write_atomic(staging / "labels.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        if preview:
            from .preview import contact_sheet

            sheet = contact_sheet(staging, records[:preview_samples], synth.faces[0])
            sheet.save(staging / "preview.png", format="PNG")
        _publish(out, staging)
    except OSError as e:
        raise SynthError(f"OUT {out}: cannot be written ({e.strerror or e}); the new set is in {staging}") from None
    return records
