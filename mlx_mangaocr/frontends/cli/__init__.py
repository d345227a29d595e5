"""The ``mlx-mangaocr`` command (``python -m mlx_mangaocr``): subcommands, dispatched as mlx-lm's
``cli.py`` dispatches them, each a module here with its own ``main(argv)``.

    mlx-mangaocr read CROPS...          OCR crops (images or folders), text or JSON
    mlx-mangaocr pages PAGES...         whole pages: text blocks in reading order
    mlx-mangaocr mokuro LIBRARY...      volumes to .mokuro files, resumable, over mlx.launch ranks
    mlx-mangaocr watch DIR              OCR images as they appear in a folder
    mlx-mangaocr clipboard              OCR images copied to the clipboard, copy the text back
    mlx-mangaocr eval DATA...           CER and exact match on labelled crops (JSONL, CSV, Manga109-s, .mokuro)
    mlx-mangaocr synth OUT --count N    generate labelled synthetic crops (manga-ocr's recipe, with Pillow)
    mlx-mangaocr train --train DATA... --output DIR --steps N   fine-tune the OCR model (resumable, over ranks)
    mlx-mangaocr convert SOURCE         convert a Hugging Face checkpoint to an MLX folder
    mlx-mangaocr export DIR -o HF_DIR   an MLX model folder back to the Hugging Face layout
    mlx-mangaocr bench ARGS             the benchmark harness (from a checkout)

Every earlier form works as an alias: ``mlx-mangaocr IMAGES...`` is ``read``; ``--pages``,
``--mokuro``, ``--watch DIR`` and ``--clipboard`` anywhere among the arguments choose ``pages``,
``mokuro``, ``watch`` and ``clipboard``. A subcommand's name wins over a file of that name:
``mlx-mangaocr ./read`` or ``mlx-mangaocr -- read`` reads the file.
"""

from __future__ import annotations

import importlib
import logging
import sys

COMMANDS = {
    "read": "OCR crops: image files or folders of them (text, --json, --jsonl; --jsonl --output FILE resumes)",
    "pages": "whole pages: find the text and read it, blocks in reading order (--jsonl, --draw DIR)",
    "mokuro": "volumes and libraries to VOLUME.mokuro files, resumable, over mlx.launch ranks too",
    "watch": "OCR new or changed images in a folder as they appear (as manga-ocr's folder mode)",
    "clipboard": "OCR images copied to the clipboard and copy the text back (as manga-ocr's default)",
    "eval": "character error rate and exact match on labelled crops: JSONL, CSV, Manga109-s, .mokuro, synth output",
    "synth": "generate labelled synthetic crops as manga-ocr made its training data (fonts, corpus, --preview)",
    "train": "fine-tune the OCR model on labelled crops, as transformers would; resumable, over mlx.launch ranks",
    "convert": "convert a Hugging Face checkpoint (OCR model or detector) to an MLX model folder",
    "export": "an MLX OCR model folder (converted or fine-tuned) back to the Hugging Face layout manga-ocr loads",
    "bench": "the MLX against PyTorch benchmark harness (from a checkout of the repository)",
}
ALIASES = {"--pages": "pages", "--mokuro": "mokuro", "--clipboard": "clipboard", "--watch": "watch"}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: mlx-mangaocr COMMAND [ARGS...]   (mlx-mangaocr COMMAND --help for its options)",
        "",
        "Japanese manga OCR (manga-ocr) on MLX.",
        "",
        "commands:",
        *(f"  {name:<{width}}  {line}" for name, line in COMMANDS.items()),
        "",
        "Without a command, the arguments are read's: mlx-mangaocr IMAGES... The earlier flags still work:",
        "--pages, --mokuro, --watch DIR and --clipboard choose their command. ./NAME or -- NAME reads a",
        "file named like a command.",
        "",
        "Exit status: 0 all read, 1 some failed (each is named on stderr), 2 nothing could run.",
    ]
    return "\n".join(lines)


def split(argv: list[str]) -> tuple[str, list[str]]:
    """The subcommand and its arguments, for the subcommand forms and every alias."""
    if argv and argv[0] in COMMANDS:
        return argv[0], argv[1:]
    before, sep, after = _split_at_dashes(argv)
    chosen = []
    rest = []
    i = 0
    while i < len(before):
        arg = before[i]
        name, _, value = arg.partition("=")
        if name in ALIASES and (arg == name or name == "--watch"):
            chosen.append(ALIASES[name])
            if name == "--watch":
                folder = value if value else (before[i + 1] if i + 1 < len(before) else None)
                if folder is None:
                    raise SystemExit(_fail("--watch needs a folder: mlx-mangaocr watch DIR"))
                rest.insert(0, folder)
                i += 0 if value else 1
        else:
            rest.append(arg)
        i += 1
    if len(set(chosen)) > 1:
        raise SystemExit(_fail(f"give one of {', '.join(sorted(set(chosen)))}, not several"))
    return (chosen[0] if chosen else "read"), rest + sep + after


def _split_at_dashes(argv: list[str]) -> tuple[list[str], list[str], list[str]]:
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], ["--"], argv[at + 1 :]
    return argv, [], []


def _fail(message: str) -> int:
    print(f"mlx-mangaocr: error: {message}", file=sys.stderr)
    return 2


class _Stderr(logging.Handler):
    """The library's log messages (``mlx_mangaocr``: a first-use conversion) on stderr, as lines."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stderr, flush=True)


def _show_library_messages() -> None:
    logger = logging.getLogger("mlx_mangaocr")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _show_library_messages()
    if not argv:
        print(usage(), file=sys.stderr)
        raise SystemExit(2)
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = split(argv)
    try:
        return importlib.import_module(f"{__name__}.{command}").main(rest)
    except KeyboardInterrupt:  # Ctrl-C while loading, before a command's own handling
        print(file=sys.stderr)
        return 130
