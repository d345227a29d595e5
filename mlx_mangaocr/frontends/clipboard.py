"""The system clipboard: read an image (Pillow's ``ImageGrab``), write text back.

macOS: ``ImageGrab`` and ``pbcopy``. Linux: ``wl-paste``/``wl-copy`` (Wayland, package
wl-clipboard) or ``xclip`` (X11). Windows: ``ImageGrab`` and ``clip``. Where none of these is
usable, ``Clipboard()`` raises ``ClipboardUnavailableError`` saying what is missing.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable

from PIL import Image, ImageGrab

from ..core.errors import MangaOcrError


class ClipboardUnavailableError(MangaOcrError):
    """No clipboard this process can use (no tool installed, or no graphical session)."""


class Clipboard:
    def __init__(self):
        if sys.platform == "darwin":
            self.copy_command, self.encoding = ["pbcopy"], "utf-8"
        elif sys.platform == "win32":
            self.copy_command, self.encoding = ["clip"], "utf-16le"
        else:
            wayland, x11 = os.environ.get("WAYLAND_DISPLAY"), os.environ.get("DISPLAY")
            if wayland and shutil.which("wl-paste") and shutil.which("wl-copy"):
                self.copy_command = ["wl-copy"]
            elif x11 and shutil.which("xclip"):
                self.copy_command = ["xclip", "-selection", "clipboard", "-in"]
            elif not (wayland or x11):
                raise ClipboardUnavailableError(
                    "no clipboard: no graphical session (neither WAYLAND_DISPLAY nor DISPLAY is set)"
                )
            else:
                raise ClipboardUnavailableError(
                    "no clipboard tool: install wl-clipboard (Wayland: wl-paste and wl-copy) or xclip (X11)"
                )
            self.encoding = "utf-8"

    def grab(self) -> Image.Image | None:
        """The image on the clipboard, or None (text, files or nothing)."""
        try:
            content = ImageGrab.grabclipboard()
        except (OSError, ChildProcessError, NotImplementedError) as e:
            raise ClipboardUnavailableError(f"cannot read the clipboard: {e}") from None
        return content if isinstance(content, Image.Image) else None

    def copy(self, text: str) -> None:
        try:
            subprocess.run(self.copy_command, input=text.encode(self.encoding), check=True, timeout=10)
        except (OSError, subprocess.SubprocessError) as e:
            raise ClipboardUnavailableError(f"cannot write the clipboard with {self.copy_command[0]}: {e}") from None


def fingerprint(image: Image.Image) -> str:
    return hashlib.sha1(image.mode.encode() + repr(image.size).encode() + image.tobytes()).hexdigest()


def watch_clipboard(
    clipboard: Clipboard,
    on_image: Callable[[Image.Image], str | None],
    interval: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Call ``on_image`` for every new image put on the clipboard and copy back the text it
    returns (None: copy nothing). The image already there at start is skipped, as manga-ocr does."""
    current = clipboard.grab()
    last = fingerprint(current) if current is not None else None
    while not stop():
        time.sleep(interval)
        image = clipboard.grab()
        if image is None:
            last = None  # the same picture copied again after our text is new again
            continue
        mark = fingerprint(image)
        if mark == last:
            continue
        last = mark
        text = on_image(image)
        if text is not None:
            clipboard.copy(text)
