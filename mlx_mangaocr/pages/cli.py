"""``mlx-mangaocr --pages`` and ``mlx-mangaocr --mokuro``: whole pages and volumes from the command line."""

from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

from ..atomic_files import write_atomic
from ..cli import Output, Progress, expand_inputs, model_source
from ..distributed import DistributedError, Ranks
from ..errors import InvalidImageError, MangaOcrError
from ..images import load_page
from ..names import display_name
from .library import find_volumes, split_clashes
from .reader import load_page_reader
from .volume import Volume, VolumeError, read_volume


def _settings(args, decoding: dict) -> str:
    """What a cached page depends on: the models (resolved folders or hub ids) and the options."""
    return json.dumps(
        {
            "ocr": model_source(args.model),
            "detector": model_source(args.detector),
            "left_to_right": args.left_to_right,
            "decoding": decoding,
        },  # fmt: skip
        sort_keys=True,
    )


def run_pages(args, decoding: dict, ranks: Ranks | None = None) -> int:
    drawings = None
    if args.draw and not args.mokuro:
        paths, errors = expand_inputs(args.inputs)
        try:
            drawings = drawing_paths(paths, Path(args.draw))
        except MangaOcrError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    try:
        reader = load_page_reader(args.model, args.detector, right_to_left=not args.left_to_right, **decoding)
    except MangaOcrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reader.ocr.scheduler = args.scheduler or reader.ocr.scheduler
    if args.mokuro:
        try:
            return _run_volumes(reader, args, decoding, ranks or Ranks())
        except DistributedError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
    stream = open(args.output, "a", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        return _run_pages(reader, args, stream, drawings)
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


def _run_pages(reader, args, stream, drawings: dict[str, Path] | None) -> int:
    paths, errors = expand_inputs(args.inputs)
    several = len(paths) + len(errors) > 1
    out = Output(args.fmt or "text", stream, show_path=several)
    for record in errors:
        out.emit(record)
    show = args.progress if args.progress is not None else several and sys.stderr.isatty()
    progress = Progress(len(paths), show, unit="pages")
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start : start + args.batch_size]
        images, failed = {}, {}
        for path in chunk:
            try:
                images[path] = load_page(path)
            except InvalidImageError as e:
                failed[path] = str(e)
        pages = dict(zip(images, reader.read_pages(images.values(), args.batch_size), strict=True))
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
                error = _draw(images[path], page, drawings[path])
                if error:
                    out.emit({"path": name, "error": error})
        progress.advance(len(chunk))
    out.close()
    return 1 if out.failed else 0


def _draw(image, page, target: Path) -> str | None:
    """Write a page's drawing (a temporary file and a rename); a message when it cannot be written."""
    from .draw import draw_page

    data = io.BytesIO()
    draw_page(image, page).save(data, format="PNG")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, data.getvalue())
    except OSError as e:
        return f"cannot write the drawing {display_name(target)}: {e.strerror or e}"
    return None


def _run_volumes(reader, args, decoding: dict, ranks: Ranks) -> int:
    """Each volume in turn, its pages left to read shared by the ranks; rank 0 writes its .mokuro.
    A volume that fails is named and the others go on; the exit status is then 1."""
    began = time.perf_counter()
    settings = _settings(args, decoding)
    lead = ranks.rank == 0  # reports what every rank sees alike
    several = ranks.size > 1
    failed = False

    def error(message: str, everyone: bool = False) -> None:
        nonlocal failed
        failed = True
        if lead or everyone:
            print(f"error: {message}", file=sys.stderr, flush=True)

    paths: list[Path] = []
    problems: list[str] = []
    for item in args.inputs:
        try:
            paths += find_volumes(item, problems)
        except VolumeError as e:
            error(str(e))
    for problem in problems:
        error(problem)
    seen: set[str] = set()
    paths = [p for p in paths if not (os.path.realpath(p) in seen or seen.add(os.path.realpath(p)))]  # once each
    ranks.agree("the volumes to read", "\n".join(display_name(p) for p in paths))
    paths, clashes = split_clashes(paths)
    for message in clashes:
        error(message)
    ranks.check_shared({p.parent for p in paths})
    totals = [[0, 0] for _ in range(ranks.size)]  # [read, failed] by rank, over every volume
    volumes = cached = skipped = 0
    for path in paths:
        volume = None
        try:
            volume = Volume.open(path, max_member_bytes=int(args.max_member_mb * 2**20))
        except VolumeError as e:
            error(str(e))
        try:
            show = args.progress if args.progress is not None else several or sys.stderr.isatty()
            name = display_name(volume.name) if volume else ""
            label = f"{ranks.label}: {name}: " if several else f"{name} "
            progress = Progress(len(volume.pages) if volume else 0, show, unit="pages", label=label, lines=several)

            def report(message: str, show: bool = show) -> None:
                nonlocal failed
                failed = True
                newline = "\n" if show and not several else ""  # after the bar
                print(f"{newline}error: {message}", file=sys.stderr, flush=True)

            def note(message: str) -> None:
                print(message, file=sys.stderr, flush=True)

            result = read_volume(reader, volume, settings, args.batch_size, report, progress, ranks, args.force,
                                 args.wait, note)  # fmt: skip
            if result.status == "done before":
                skipped += 1
                continue
            if result.status != "written":
                failed = True
                continue
            volumes += 1
            cached += result.cached
            for total, counts in zip(totals, result.by_rank, strict=True):
                total[0], total[1] = total[0] + counts[0], total[1] + counts[1]
            if result.failed or (volume and volume.problems):
                failed = True
            if lead:
                by_rank = ", ".join(f"{c[0]} by rank {r}" for r, c in enumerate(result.by_rank))
                by_rank = f": {by_rank}" if several else ""
                print(
                    f"{display_name(result.path)}: {result.read + result.cached} of {result.pages} pages "
                    f"({result.read} read{by_rank}, {result.cached} from the cache, {result.failed} could not be read)",
                    file=sys.stderr,
                    flush=True,
                )
        except KeyboardInterrupt:
            where = display_name(volume.cache_folder) if volume else "the volumes' caches"
            print(f"\ninterrupted: the pages read so far are kept in {where}", file=sys.stderr)
            return 130
        finally:
            if volume is not None:
                volume.close()
    if lead and (several or len(paths) > 1):
        before = f" ({skipped} done before)" if skipped else ""
        print(
            f"done: {volumes} of {len(paths)} volume(s){before}, {sum(c[0] for c in totals)} pages read, {cached} from "
            f"the cache, {sum(c[1] for c in totals)} could not be read, {ranks.summary(totals)} "
            f"in {time.perf_counter() - began:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return 1 if failed else 0
