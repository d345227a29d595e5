"""A read page: ``Page(width, height, blocks)``, its blocks in reading order, and its ``.mokuro`` form."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ...core.names import is_text
from .boxes import Box

MOKURO_VERSION = "0.2.1"  # the .mokuro format version written (mokuro 0.2.x's layout)


@dataclass(frozen=True)
class Block:
    """One text box of a page and what the OCR read in it.

    ``box`` (x1, y1, x2, y2) in page pixels; ``kind`` ``"text_bubble"`` or ``"text_free"``;
    ``vertical`` True for a box taller than wide; ``text`` as manga-ocr prints it; ``confidence``
    the OCR's mean token probability; ``bubble`` the enclosing bubble's box or None; ``font_size``
    the estimated font size in px.
    """

    box: Box
    kind: str
    vertical: bool
    text: str
    confidence: float
    bubble: Box | None
    font_size: int

    def to_dict(self) -> dict:
        out = asdict(self)
        out["box"], out["bubble"] = list(self.box), list(self.bubble) if self.bubble else None
        out["confidence"] = round(self.confidence, 4)
        return out

    def to_mokuro(self) -> dict:
        """The block as a ``.mokuro`` block: one line (manga-ocr reads a box whole), its quad the box's corners."""
        x1, y1, x2, y2 = self.box
        return {
            "box": [x1, y1, x2, y2],
            "vertical": self.vertical,
            "font_size": self.font_size,
            "lines_coords": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]],
            "lines": [self.text],
        }


@dataclass(frozen=True)
class Page:
    """A page's size and its text blocks in reading order."""

    width: int
    height: int
    blocks: list[Block] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The blocks' texts in reading order, one per line."""
        return "\n".join(block.text for block in self.blocks)

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "blocks": [b.to_dict() for b in self.blocks]}

    @classmethod
    def from_dict(cls, data) -> Page:
        """The inverse of ``to_dict``; ``ValueError`` for anything else (a garbage cache entry)."""
        try:
            blocks = [_block_from_dict(b) for b in data["blocks"]]
            page = cls(data["width"], data["height"], blocks)
        except (KeyError, TypeError, IndexError) as e:
            raise ValueError(f"not a page: {e!r}") from None
        if not (_is_int(page.width) and _is_int(page.height)):
            raise ValueError("not a page: width and height must be whole numbers")
        return page

    def to_mokuro(self, img_path: str) -> dict:
        """One page of a ``.mokuro`` file; ``img_path`` relative to the ``.mokuro`` file, with ``/``."""
        return {
            "version": MOKURO_VERSION,
            "img_width": self.width,
            "img_height": self.height,
            "blocks": [block.to_mokuro() for block in self.blocks],
            "img_path": img_path,
        }


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _box(value) -> tuple[int, int, int, int]:
    if not (isinstance(value, list) and len(value) == 4 and all(_is_int(v) for v in value)):
        raise ValueError(f"not a box: {value!r}")
    return tuple(value)


def _block_from_dict(b: dict) -> Block:
    block = Block(
        _box(b["box"]),
        b["kind"],
        b["vertical"],
        b["text"],
        b["confidence"],
        _box(b["bubble"]) if b["bubble"] is not None else None,
        b["font_size"],
    )  # fmt: skip
    if not (isinstance(block.kind, str) and isinstance(block.vertical, bool) and isinstance(block.text, str)
            and is_text(block.text) and is_text(block.kind)
            and isinstance(block.confidence, (int, float)) and _is_int(block.font_size)):  # fmt: skip
        raise ValueError(f"not a block: {b!r}")
    return block
