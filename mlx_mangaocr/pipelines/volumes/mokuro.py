"""``.mokuro`` files, as mokuro 0.2.x writes them: the volume's header (title, volume and their
uuids) and its read pages in page order; and whether an existing one makes its volume done."""

from __future__ import annotations

import uuid
from pathlib import Path

from ...core.files import load_json
from ...core.names import display_name, is_text
from ..pages.page import MOKURO_VERSION, Page
from .volume import Volume


def _uuid_from(path: Path, key: str) -> str | None:
    data = load_json(path)
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, str) and is_text(value) else None


def title_uuid(volume: Volume) -> str:
    """The title's uuid: this volume's earlier ``.mokuro``'s, else a sibling volume's, else a new one."""
    for path in [volume.mokuro_path, *sorted(volume.path.parent.glob("*.mokuro"))]:
        found = _uuid_from(path, "title_uuid")
        if found:
            return found
    return str(uuid.uuid4())


def mokuro_state(volume: Volume) -> tuple[bool, str | None]:
    """Whether the volume's ``.mokuro`` is done: there, readable, and holding every page of the
    volume. The message says why an existing file does not count (it is then read again)."""
    path = volume.mokuro_path
    if not path.exists():
        return False, None
    data = load_json(path)
    pages = data.get("pages") if isinstance(data, dict) else None
    if not isinstance(pages, list) or not all(isinstance(p, dict) for p in pages):
        return False, f"{display_name(path)} is not a .mokuro file (not mokuro's JSON): the volume is read again"
    have = {p.get("img_path") for p in pages if isinstance(p.get("img_path"), str)}
    return not volume.problems and all(page in have for page in volume.pages), None


def mokuro_document(volume: Volume, pages: dict[str, Page]) -> dict:
    """The ``.mokuro`` content: the volume's header and the read pages in page order."""
    return {
        "version": MOKURO_VERSION,
        "title": display_name(volume.path.resolve().parent.name),
        "title_uuid": title_uuid(volume),
        "volume": display_name(volume.name),
        "volume_uuid": _uuid_from(volume.mokuro_path, "volume_uuid") or str(uuid.uuid4()),
        "pages": [pages[p].to_mokuro(p) for p in volume.pages if p in pages],
    }
