"""The ``manga_ocr`` alias: unmodified code written for manga-ocr runs on this library.

    import mlx_mangaocr.compat; mlx_mangaocr.compat.install()   # in-process
    mlx-mangaocr-as-manga-ocr COMMAND [ARGS...]                  # run a tool with the alias in place

``install()`` makes ``import manga_ocr`` give a package whose ``MangaOcr`` is
``mlx_mangaocr.MangaOcr`` and whose ``manga_ocr.ocr`` is ``mlx_mangaocr.frontends.dropin`` (so replacing
``manga_ocr.ocr.post_process`` works). When the real manga-ocr is installed, its other modules
(``manga_ocr.run``, ``manga_ocr.__main__``: the ``manga_ocr`` command) are still found, and import
the MLX class through the alias; nothing of upstream's ``ocr`` module (nor torch) is loaded.
"""

from __future__ import annotations

import importlib.util
import os
import runpy
import shutil
import sys
import types
from importlib import metadata

from .. import __version__
from . import dropin

USAGE = """usage: mlx-mangaocr-as-manga-ocr COMMAND [ARGS...]

Runs COMMAND with `import manga_ocr` giving mlx-mangaocr's MangaOcr. COMMAND is
  NAME          an installed console script (e.g. mokuro, manga_ocr)
  -m MODULE     a module, as python -m MODULE
  FILE.py       a Python script
ARGS are passed on; the exit status is COMMAND's."""


def install() -> types.ModuleType:
    """Put the alias in ``sys.modules`` (idempotent) and return the ``manga_ocr`` module it made.
    Call it before the code that imports ``manga_ocr``; a ``manga_ocr`` imported earlier is replaced."""
    existing = sys.modules.get("manga_ocr")
    if getattr(existing, "__mlx_mangaocr__", False):
        return existing
    real = _real_package_path()
    package = types.ModuleType("manga_ocr", "manga-ocr's API, served by mlx-mangaocr (MLX).")
    package.__mlx_mangaocr__ = True
    package.__path__ = real  # upstream's other modules (run, __main__) stay importable
    # no __file__ at all (as a namespace package): inspect, which libraries call on import, skips
    # modules without one, and fails on a __file__ of None once it has mapped the real manga_ocr's
    package.__version__ = _real_version() or __version__
    package.MangaOcr = dropin.MangaOcr
    package.ocr = dropin
    for name in [n for n in sys.modules if n == "manga_ocr" or n.startswith("manga_ocr.")]:
        del sys.modules[name]
    sys.modules["manga_ocr"] = package
    sys.modules["manga_ocr.ocr"] = dropin
    return package


def _real_package_path() -> list[str]:
    """The installed manga-ocr's package folder, found without importing it; [] if there is none."""
    try:
        spec = importlib.util.find_spec("manga_ocr")
    except (ImportError, ValueError):  # ValueError: a manga_ocr module without a spec
        return []
    return list(spec.submodule_search_locations or []) if spec else []


def _real_version() -> str | None:
    try:
        return metadata.version("manga-ocr")
    except metadata.PackageNotFoundError:
        return None


def _console_script(name: str):
    for entry in metadata.entry_points(group="console_scripts"):
        if entry.name == name:
            return entry
    return None


def run(argv: list[str]) -> int:
    """Install the alias and run ``argv`` (see ``USAGE``); return its exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE, file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    install()
    if argv[0] == "-m":
        if len(argv) < 2:
            print("error: -m needs a module name\n" + USAGE, file=sys.stderr)
            return 2
        module, args = argv[1], argv[2:]
        sys.argv = [module, *args]
        return _exit_status(lambda: runpy.run_module(module, run_name="__main__", alter_sys=True))
    command, args = argv[0], argv[1:]
    if command.endswith(".py") or os.sep in command:
        if not os.path.isfile(command):
            print(f"error: no such script: {command}", file=sys.stderr)
            return 2
        sys.argv = [command, *args]
        sys.path.insert(0, os.path.dirname(os.path.abspath(command)))
        return _exit_status(lambda: runpy.run_path(command, run_name="__main__"))
    entry = _console_script(command)
    if entry is None:
        where = shutil.which(command)
        found = f" ({where} is not a Python console script of this environment)" if where else ""
        print(
            f"error: {command!r} is not an installed console script{found}; give -m MODULE or a .py file\n{USAGE}",
            file=sys.stderr,
        )
        return 2
    sys.argv = [command, *args]
    return _exit_status(lambda: entry.load()())


def _exit_status(call) -> int:
    """Run ``call`` as a program would run: its return value or ``SystemExit`` is the status."""
    try:
        result = call()
    except SystemExit as e:
        result = e.code
    if result is None or isinstance(result, dict):  # runpy returns the module's globals
        return 0
    if isinstance(result, int):
        return result
    print(result, file=sys.stderr)  # sys.exit("message"), as the interpreter does
    return 1


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
