"""File names that are not valid Unicode, shown as text.

On Linux a file name is bytes. A folder unpacked from a zip made on a Japanese Windows machine
holds Shift-JIS (CP932) names, which Python hands over with lone surrogates (``surrogateescape``)
that no UTF-8 file or terminal can take; a zip member without the UTF-8 flag is CP437 by the zip
spec, whatever the bytes were. Where a name is written as text (``.mokuro`` ``img_path``, JSON
records, messages) it goes through ``display_name``: bytes that are UTF-8 stay as they are, bytes
that decode cleanly as CP932 are decoded so (what the user meant), and anything else has its
undecodable bytes written as ``\\xNN``. The file itself is always opened by its real name, and
caches key it by its bytes (``name_bytes``), so a rerun finds the same page in the same entry.
"""

from __future__ import annotations

import os
import unicodedata
import zipfile

UTF8_FLAG = 0x800  # general purpose flag bit 11: the member's name is UTF-8


def decode_name_bytes(raw: bytes) -> str:
    """Name bytes as text: UTF-8 if they are, else CP932 if they decode cleanly (no control,
    private-use or unassigned characters: Python's CP932 maps the bytes 0x80, 0xA0 and 0xFD-0xFF
    to such), else UTF-8 with each undecodable byte written as ``\\xNN``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        text = raw.decode("cp932")
    except UnicodeDecodeError:
        text = None
    if text is not None and not any(unicodedata.category(c) in ("Co", "Cc", "Cn") for c in text):
        return text
    return raw.decode("utf-8", "backslashreplace")


def is_text(name: str) -> bool:
    """Whether ``name`` can be written as UTF-8 as it is (no lone surrogates from undecodable bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_name(name: str | os.PathLike) -> str:
    """A path or name as text for outputs and messages; each ``/``-separated part decoded on its
    own (see the module docstring). A name that is valid Unicode is returned as it is."""
    name = os.fspath(name)
    if is_text(name):
        return name
    return "/".join(decode_name_bytes(os.fsencode(part)) for part in name.split("/"))


def name_bytes(name: str) -> bytes:
    """The bytes a file name stands for (what a cache keys it by)."""
    return os.fsencode(name)


def member_raw_name(info: zipfile.ZipInfo) -> bytes:
    """A zip member's name as the bytes stored in the archive (zipfile decodes them as CP437
    unless the UTF-8 flag is set)."""
    if info.flag_bits & UTF8_FLAG:
        return info.filename.encode("utf-8", "surrogateescape")
    try:
        return info.filename.encode("cp437")
    except UnicodeEncodeError:  # decoded with another metadata_encoding: keep what zipfile gave
        return info.filename.encode("utf-8", "surrogateescape")


def member_display_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name as text: as stored when flagged UTF-8, else its bytes decoded part by
    part as ``decode_name_bytes`` does (a UTF-8 name without the flag, a CP932 one, else escaped)."""
    if info.flag_bits & UTF8_FLAG:
        return info.filename
    return "/".join(decode_name_bytes(part) for part in member_raw_name(info).split(b"/"))


def unique_names(items: list[tuple[object, str, bool]]) -> dict[object, str]:
    """Text names for outputs that no two items share: ``items`` are (key, shown, exact), where
    ``shown`` is an item's name as text and ``exact`` says it is the real name (valid Unicode).
    Exact names keep themselves; a decoded one that another item already shows gets `` (2)``,
    `` (3)``, ... before its suffix, so no page or crop is ever merged with another or left out."""
    out: dict[object, str] = {key: shown for key, shown, exact in items if exact}
    taken = set(out.values())
    for key, shown, exact in items:
        if exact:
            continue
        base, ext = os.path.splitext(shown)
        candidate, k = shown, 2
        while candidate in taken:
            candidate, k = f"{base} ({k}){ext}", k + 1
        taken.add(candidate)
        out[key] = candidate
    return out


def unique_display_names(names: list[str]) -> dict[str, str]:
    """``display_name`` of each of ``names`` (file names or paths), made unique (``unique_names``)."""
    return unique_names([(n, display_name(n), is_text(n)) for n in dict.fromkeys(names)])
