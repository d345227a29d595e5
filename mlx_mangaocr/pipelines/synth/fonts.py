"""Japanese fonts: found on the system or in given folders, each face of a ``.ttc`` collection on
its own, kept when it renders common Japanese; and which characters a face really draws.

A character counts as missing when its rendered mask is the face's ``.notdef`` box (the mask of a
code point no font has, U+10FFFD) or, for a visible character, empty."""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ImageFont, features

from .charsets import SynthError

FONT_SUFFIXES = (".ttf", ".otf", ".ttc", ".otc")
PROBE = "あア漢"  # a face that draws these three draws Japanese
NOTDEF_PROBE = "\U0010fffd"
CHECK_SIZE = 32
INSTALL_HINT = (
    "install Japanese fonts (Debian/Ubuntu: apt install fonts-ipaexfont fonts-noto-cjk; macOS has Hiragino) "
    "or pass --fonts DIR"
)


@dataclass(frozen=True, order=True)
class FontFace:
    """One face: a font file and its index in a collection (0 for a plain .ttf/.otf)."""

    path: str
    index: int = 0

    @property
    def name(self) -> str:
        return f"{Path(self.path).name}#{self.index}" if self.index else Path(self.path).name


def system_font_dirs() -> list[Path]:
    """Where fonts live on this system (macOS, Linux, Windows)."""
    home = Path.home()
    if sys.platform == "darwin":
        return [Path("/System/Library/Fonts"), Path("/System/Library/AssetsV2"), Path("/Library/Fonts"),
                home / "Library/Fonts"]  # fmt: skip
    if sys.platform == "win32":
        return [Path(os.environ.get("WINDIR", "C:/Windows")) / "Fonts"]
    return [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), home / ".fonts", home / ".local/share/fonts"]


def font_files(folders: list[Path]) -> list[Path]:
    """Font files (``.ttf``, ``.otf``, ``.ttc``, ``.otc``) under ``folders``, recursively, each once
    (links resolved: Debian links fonts-japanese-gothic.ttf to IPAex Gothic), sorted."""
    found, seen = set(), set()
    for folder in folders:
        if folder.is_dir():
            for root, dirs, names in os.walk(folder, followlinks=True):
                real = os.path.realpath(root)
                if real in seen:  # a link back to a folder already walked: a loop, or two ways in
                    dirs[:] = []
                    continue
                seen.add(real)
                found.update(Path(os.path.realpath(Path(root) / n)) for n in names if n.lower().endswith(FONT_SUFFIXES))
    return sorted(p for p in found if p.is_file())


def faces_of(path: Path) -> list[FontFace]:
    """Every face of ``path`` that draws Japanese (``PROBE``). In a collection that has faces named
    JP (Noto CJK), only those: the others draw the same characters in Chinese or Korean forms."""
    faces = []
    index = 0
    while index < 64:
        try:
            font = ImageFont.truetype(str(path), CHECK_SIZE, index=index, layout_engine=ImageFont.Layout.BASIC)
            notdef = notdef_mask(font)
        except (OSError, ValueError):
            break  # past the last face, or not a font FreeType can read
        if all(renders(font, c, notdef) for c in PROBE):
            faces.append((FontFace(str(path), index), " ".join(font.getname())))
        if not str(path).lower().endswith((".ttc", ".otc")):
            break
        index += 1
    japanese = [face for face, name in faces if " JP" in name or "Japan" in name]
    return japanese or [face for face, _ in faces]


def find_fonts(folders: list[str] | None = None) -> list[FontFace]:
    """The Japanese faces under ``folders`` (``--fonts``), else on the system. Raises ``SynthError``
    naming the folders when there are none."""
    if folders:
        for folder in folders:
            if not Path(folder).is_dir():
                raise SynthError(f"--fonts {folder}: not a folder")
        faces = [face for path in font_files([Path(f) for f in folders]) for face in faces_of(path)]
        if not faces:
            raise SynthError(f"--fonts {' '.join(folders)}: no font there draws Japanese ({PROBE}); {INSTALL_HINT}")
        return faces
    faces = [face for path in font_files(system_font_dirs()) for face in faces_of(path)]
    if not faces:
        where = ", ".join(str(d) for d in system_font_dirs())
        raise SynthError(f"no Japanese font found on this system (looked in {where}); {INSTALL_HINT}")
    return faces


def notdef_mask(font: ImageFont.FreeTypeFont) -> bytes:
    return _mask_key(font, NOTDEF_PROBE)


def _mask_key(font: ImageFont.FreeTypeFont, char: str) -> bytes:
    mask = font.getmask(char)
    return bytes(f"{mask.size}", "ascii") + bytes(mask)


def renders(font: ImageFont.FreeTypeFont, char: str, notdef: bytes) -> bool:
    """Whether ``font`` draws ``char``: its mask is neither the ``.notdef`` box nor empty."""
    if char.isspace():
        return True
    try:
        mask = font.getmask(char)
        if mask.size[0] == 0 or mask.size[1] == 0 or not np.asarray(mask).any():
            return False
        return _mask_key(font, char) != notdef
    except (OSError, ValueError):  # a glyph FreeType cannot load (corrupt outline data) is not drawn
        return False


class FontCharsets:
    """Which characters of a vocabulary each face draws, worked out once per face (thread-safe)."""

    def __init__(self, vocab: frozenset[str]):
        self.vocab = vocab
        self._sets: dict[FontFace, tuple[str, ...]] = {}
        self._lock = threading.Lock()

    def chars(self, face: FontFace) -> tuple[str, ...]:
        """The characters of the vocabulary ``face`` draws, sorted (a stable order for sampling)."""
        with self._lock:
            if face not in self._sets:
                font = ImageFont.truetype(face.path, CHECK_SIZE, index=face.index, layout_engine=ImageFont.Layout.BASIC)
                notdef = notdef_mask(font)
                self._sets[face] = tuple(sorted(c for c in self.vocab if renders(font, c, notdef)))
            return self._sets[face]


def has_raqm() -> bool:
    """Whether Pillow has complex text layout (libraqm), which gives the fonts' vertical forms."""
    return bool(features.check("raqm"))


class FontCache:
    """``FreeTypeFont`` objects by (face, size), one set per thread: FreeType faces are not shared
    between threads."""

    def __init__(self):
        self._local = threading.local()

    def get(self, face: FontFace, size: int, raqm: bool) -> ImageFont.FreeTypeFont:
        fonts = getattr(self._local, "fonts", None)
        if fonts is None:
            fonts = self._local.fonts = {}
        key = (face, size, raqm)
        if key not in fonts:
            engine = ImageFont.Layout.RAQM if raqm else ImageFont.Layout.BASIC
            fonts[key] = ImageFont.truetype(face.path, size, index=face.index, layout_engine=engine)
        return fonts[key]
