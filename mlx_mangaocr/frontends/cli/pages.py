"""``mlx-mangaocr pages PAGES...``: whole pages, each page's text blocks in reading order.

mlx-mangaocr pages page1.png chapter/          # the blocks' texts (path<TAB>text for several)
mlx-mangaocr pages chapter/ --jsonl            # one JSON object per page: width, height, blocks
mlx-mangaocr pages chapter/ --draw checked/    # also each page with its blocks drawn
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

from ...core.atomic_files import write_atomic
from ...core.errors import InvalidImageError, MangaOcrError
from ...core.images import load_page
from ...core.names import display_name
from ...pipelines.pages.reader import PAGE_GROUP, load_page_reader
from . import common
from .common import Output, Progress, error, expand_inputs


def add_page_options(p) -> None:
    common.add_model(p)
    common.add_detector(p)
    common.add_decoding(p, batch="crops decoded together")
    common.add_progress(p)
    p.add_argument("--left-to-right", action="store_true", help="western reading order (default: manga's)")
    p.add_argument(
        "--page-group",
        type=common.positive_int,
        default=PAGE_GROUP,
        metavar="N",
        help=f"pages read, detected and held at once (default {PAGE_GROUP}); their crops stream on through the "
        "OCR, so a small group keeps the decoder full and memory low",
    )
    p.add_argument(
        "--buffer-pool-mb",
        type=common.non_negative,
        metavar="MB",
        help="cap MLX's pool of freed buffers kept for reuse (mx.set_cache_limit; default: MLX's own, up to its "
        "memory limit). 0 frees them at once: less memory over a volume (README: memory)",
    )


def build_parser():
    p = common.parser("pages", "Whole pages: find the text, read it, give the blocks in reading order.")
    p.add_argument("inputs", nargs="+", metavar="PAGE_OR_DIR", help="page images or folders of them")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="one JSON array at the end")
    fmt.add_argument("--jsonl", dest="fmt", action="store_const", const="jsonl", help="one JSON object per page")
    add_page_options(p)
    p.add_argument("--draw", metavar="DIR", help="also write each page with its blocks drawn, below DIR")
    p.add_argument("--output", metavar="FILE", help="append the results to FILE instead of printing them")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return common.with_pixel_limit(args, lambda: with_buffer_pool(args, lambda: _run(args)))


def load_reader(args):
    """The page reader the options name, or None after saying why not."""
    decoding = common.decoding_of(args)
    try:
        reader = load_page_reader(args.model, args.detector, right_to_left=not args.left_to_right, **decoding)
    except MangaOcrError as e:
        error(str(e))
        return None
    reader.ocr.scheduler = args.scheduler or reader.ocr.scheduler
    return reader


def with_buffer_pool(args, run):
    """``run()`` with MLX's pool of freed buffers (what MLX calls its cache) capped at
    ``--buffer-pool-mb``; the earlier limit is restored after."""
    if args.buffer_pool_mb is None:
        return run()
    import mlx.core as mx

    before = mx.set_cache_limit(int(args.buffer_pool_mb * 2**20))
    try:
        return run()
    finally:
        mx.set_cache_limit(before)


def _run(args) -> int:
    if not common.one_process("pages"):
        return 2
    problem = common.output_problem(args.output, args.inputs)
    if problem:
        error(problem)
        return 2
    paths, errors = expand_inputs(args.inputs)
    drawings = None
    if args.draw and Path(args.draw).exists() and not Path(args.draw).is_dir():
        error(f"--draw {display_name(args.draw)}: not a folder")
        return 2
    if args.draw:
        try:
            drawings = drawing_paths(paths, Path(args.draw))
        except MangaOcrError as e:
            error(str(e))
            return 2
    reader = load_reader(args)
    if reader is None:
        return 2
    stream = common.open_output(args.output)
    if stream is None:
        return 2
    try:
        return _read(reader, args, stream, paths, errors, drawings)
    except KeyboardInterrupt:
        return 130
    finally:
        if args.output:
            stream.close()


def drawing_paths(paths: list[str], folder: Path) -> dict[str, Path]:
    """Where ``--draw FOLDER`` puts each page's drawing: FOLDER / the page's path relative to the
    folder all the pages are in, with ``.png`` added (``ch1/p001.jpg`` -> ``FOLDER/ch1/p001.jpg.png``).
    Distinct pages get distinct drawings. Raises ``MangaOcrError``, naming both, when a drawing
    would be written onto an input page (the same file, by any name or link)."""
    absolute = [os.path.abspath(p) for p in paths]
    if not absolute:
        return {}
    common = os.path.commonpath([os.path.dirname(a) for a in absolute])
    drawings = {p: folder / (os.path.relpath(a, common) + ".png") for p, a in zip(paths, absolute, strict=True)}
    inputs = {}
    for path in paths:
        try:
            info = os.stat(path)
        except OSError:
            continue
        inputs[(info.st_dev, info.st_ino)] = path
    for path, drawing in drawings.items():
        try:
            info = os.stat(drawing)
        except OSError:
            continue
        page = inputs.get((info.st_dev, info.st_ino))
        if page is not None:
            raise MangaOcrError(
                f"--draw {display_name(folder)}: the drawing of {display_name(path)} would overwrite the input page "
                f"{display_name(page)}; choose another --draw folder"
            )
    return drawings


def _read(reader, args, stream, paths: list[str], errors: list[dict], drawings: dict[str, Path] | None) -> int:
    several = len(paths) + len(errors) > 1
    out = Output(args.fmt or "text", stream, show_path=several)
    for record in errors:
        out.emit(record)
    show = args.progress if args.progress is not None else several and sys.stderr.isatty()
    progress = Progress(len(paths), show, unit="pages")
    for start in range(0, len(paths), args.page_group):
        chunk = paths[start : start + args.page_group]
        images, failed = {}, {}
        for path in chunk:
            try:
                images[path] = load_page(path)
            except InvalidImageError as e:
                failed[path] = str(e)
        pages = dict(zip(images, reader.read_pages(images.values(), args.batch_size, args.page_group), strict=True))
        for path in chunk:
            name = display_name(path)
            if path in failed:
                out.emit({"path": name, "error": failed[path]})
                continue
            page = pages[path]
            if out.fmt == "text":
                for block in page.blocks:
                    out.emit({"path": name, "text": block.text})
            else:
                out.emit({"path": name, **page.to_dict()})
            if drawings is not None:
                failure = _draw(images[path], page, drawings[path])
                if failure:
                    out.emit({"path": name, "error": failure})
        progress.advance(len(chunk))
    out.close()
    return 1 if out.failed else 0


def _draw(image, page, target: Path) -> str | None:
    """Write a page's drawing (a temporary file and a rename); a message when it cannot be written."""
    from ...pipelines.pages.draw import draw_page

    data = io.BytesIO()
    draw_page(image, page).save(data, format="PNG")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data.getvalue())
    except OSError as e:
        return f"cannot write the drawing {display_name(target)}: {e.strerror or e}"
    return None
