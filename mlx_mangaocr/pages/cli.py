"""``mlx-mangaocr --pages`` and ``mlx-mangaocr --mokuro``: whole pages and volumes from the command line."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..cli import Output, Progress, expand_inputs, model_source
from ..distributed import DistributedError, Ranks
from ..errors import InvalidImageError, MangaOcrError
from ..images import load_rgb
from .reader import load_page_reader
from .volume import Volume, VolumeError, find_volumes, read_volume


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
    try:
        reader = load_page_reader(args.model, args.detector, right_to_left=not args.left_to_right, **decoding)
    except MangaOcrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    reader.ocr.scheduler = args.scheduler or reader.ocr.scheduler
    if args.mokuro:
        try:
            return _run_volumes(reader, args, decoding, ranks or Ranks())
        except (DistributedError, VolumeError) as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            return 2
    stream = open(args.output, "a", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        return _run_pages(reader, args, stream)
    except KeyboardInterrupt:
        return 130
    finally:
        if args.output:
            stream.close()


def _run_pages(reader, args, stream) -> int:
    paths, errors = expand_inputs(args.inputs)
    several = len(paths) + len(errors) > 1
    out = Output(args.fmt or "text", stream, show_path=several)
    for record in errors:
        out.emit(record)
    if args.draw:
        Path(args.draw).mkdir(parents=True, exist_ok=True)
    show = args.progress if args.progress is not None else several and sys.stderr.isatty()
    progress = Progress(len(paths), show, unit="pages")
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start : start + args.batch_size]
        images, failed = {}, {}
        for path in chunk:
            try:
                images[path] = load_rgb(path)
            except InvalidImageError as e:
                failed[path] = str(e)
        pages = dict(zip(images, reader.read_pages(images.values(), args.batch_size), strict=True))
        for path in chunk:
            if path in failed:
                out.emit({"path": path, "error": failed[path]})
                continue
            page = pages[path]
            if out.fmt == "text":
                for block in page.blocks:
                    out.emit({"path": path, "text": block.text})
            else:
                out.emit({"path": path, **page.to_dict()})
            if args.draw:
                from .draw import draw_page

                draw_page(images[path], page).save(Path(args.draw) / f"{Path(path).stem}.png")
        progress.advance(len(chunk))
    out.close()
    return 1 if out.failed else 0


def _run_volumes(reader, args, decoding: dict, ranks: Ranks) -> int:
    """Each volume in turn, its pages left to read shared by the ranks; rank 0 writes its .mokuro."""
    began = time.perf_counter()
    settings = _settings(args, decoding)
    lead = ranks.rank == 0  # reports what every rank sees alike
    several = ranks.size > 1
    failed = False
    paths = []
    for item in args.inputs:
        try:
            paths += find_volumes(item)
        except VolumeError as e:
            failed = True
            if lead:
                print(f"error: {e}", file=sys.stderr, flush=True)
    seen: set[Path] = set()
    paths = [p for p in paths if not (p.resolve() in seen or seen.add(p.resolve()))]  # a volume given twice: once
    ranks.check_shared({p.parent for p in paths})
    totals = [[0, 0] for _ in range(ranks.size)]  # [read, failed] by rank, over every volume
    volumes = cached = 0
    for path in paths:
        try:
            volume = Volume.open(path)
        except VolumeError as e:
            failed = True
            if lead:
                print(f"error: {e}", file=sys.stderr, flush=True)
            continue
        try:
            if volume.mokuro_path.exists() and not volume.cache_folder.exists() and not args.force:
                if lead:
                    print(f"{volume.mokuro_path} exists: skipping {path} (--force reads it again)", file=sys.stderr)
                continue
            show = args.progress if args.progress is not None else several or sys.stderr.isatty()
            label = f"{ranks.label}: {volume.name}: " if several else f"{volume.name} "
            progress = Progress(len(volume.pages), show, unit="pages", label=label, lines=several)

            def report(message: str, show: bool = show) -> None:
                nonlocal failed
                failed = True
                newline = "\n" if show and not several else ""  # after the bar
                print(f"{newline}error: {message}", file=sys.stderr, flush=True)

            result = read_volume(reader, volume, settings, args.batch_size, report, progress, ranks)
            volumes += 1
            cached += result.cached
            for total, counts in zip(totals, result.by_rank, strict=True):
                total[0], total[1] = total[0] + counts[0], total[1] + counts[1]
            if result.failed:
                failed = True
            if lead:
                by_rank = ", ".join(f"{c[0]} by rank {r}" for r, c in enumerate(result.by_rank))
                by_rank = f": {by_rank}" if several else ""
                print(
                    f"{result.path}: {result.read + result.cached} of {result.pages} pages "
                    f"({result.read} read{by_rank}, {result.cached} from the cache, {result.failed} could not be read)",
                    file=sys.stderr,
                    flush=True,
                )
        except KeyboardInterrupt:
            print(f"\ninterrupted: the pages read so far are kept in {volume.cache_folder}", file=sys.stderr)
            return 130
        finally:
            volume.close()
    if lead and (several or len(paths) > 1):
        print(
            f"done: {volumes} of {len(paths)} volume(s), {sum(c[0] for c in totals)} pages read, {cached} from the "
            f"cache, {sum(c[1] for c in totals)} could not be read, {ranks.summary(totals)} "
            f"in {time.perf_counter() - began:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    return 1 if failed else 0
