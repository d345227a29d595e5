"""``mlx-mangaocr read CROPS...``: OCR crops (image files or folders of them).

mlx-mangaocr read page1.png page2.png                 # one text per image (path<TAB>text for several)
mlx-mangaocr read scans/ --jsonl                      # one JSON object per image
mlx-mangaocr read crops/ --jsonl --output FILE        # resumable, over mlx.launch ranks too
"""

from __future__ import annotations

import sys
import time

from ...core.errors import MangaOcrError
from ...core.names import display_name
from ...core.ranks import DistributedError, Ranks
from ...pipelines.crop_job import run_crop_job
from ...pipelines.files import recognize_files
from . import common
from .common import Output, PrintingCallback, Progress, error, expand_inputs


def build_parser():
    p = common.parser("read", "OCR crops: image files, or folders of them (not recursive).")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files or folders of images")
    common.add_model(p)
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="fmt", action="store_const", const="json", help="one JSON array at the end")
    fmt.add_argument("--jsonl", dest="fmt", action="store_const", const="jsonl", help="one JSON object per line")
    common.add_decoding(p)
    common.add_progress(p)
    p.add_argument(
        "--output",
        metavar="FILE",
        help="write results to FILE instead of printing them: with --jsonl, a resumable job (crops FILE has are "
        "skipped) written in input order at the end, over mlx.launch ranks too; otherwise appended as they come",
    )
    p.add_argument("--force", action="store_true", help="--jsonl --output: read again the crops FILE already has")
    common.add_wait(p, "FILE (--jsonl --output)")
    return p


def main(argv: list[str]) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    job = args.fmt == "jsonl" and args.output is not None
    if (args.force or args.wait) and not job:
        p.error("--force and --wait go with --jsonl --output FILE")
    return common.with_pixel_limit(args, lambda: _run(args, job))


def _run(args, job: bool) -> int:
    try:
        ranks = Ranks.init()
    except DistributedError as e:
        error(str(e))
        return 2
    if ranks.size > 1 and not job:
        error(f"under mlx.launch ({ranks.size} ranks) only --mokuro and crops with --jsonl --output FILE split the "
              "work; run other modes as one process")  # fmt: skip
        return 2
    problem = common.output_problem(args.output, args.inputs)
    if problem:
        error(problem)
        return 2
    processor = common.load_processor(args)
    if processor is None:
        return 2
    decoding = common.decoding_of(args)
    if job:
        try:
            return _run_job(processor, args, decoding, ranks)
        except MangaOcrError as e:  # the ranks disagree or cannot see each other's files
            error(str(e))
            return 2
        except KeyboardInterrupt:
            where = display_name(args.output)
            print(f"\ninterrupted: the crops read so far are kept in {where}.parts", file=sys.stderr)
            return 130
    stream = common.open_output(args.output)
    if stream is None:
        return 2
    try:
        paths, errors = expand_inputs(args.inputs)
        out = Output(args.fmt or "text", stream, show_path=len(paths) + len(errors) > 1)
        for record in errors:
            out.emit(record)
        show = args.progress if args.progress is not None else len(paths) > 1 and sys.stderr.isatty()
        progress = Progress(len(paths), show)

        def emit(record: dict) -> None:
            out.emit(record)
            progress.advance(1)

        recognize_files(processor, paths, args.batch_size, decoding, emit)
        out.close()
        return 1 if out.failed else 0
    except KeyboardInterrupt:
        return 0
    finally:
        if args.output:
            stream.close()


def _run_job(processor, args, decoding: dict, ranks: Ranks) -> int:
    """Crops to ``--jsonl --output FILE``, split over the ranks, resumable (``pipelines.crop_job``)."""
    began = time.perf_counter()
    paths, errors = expand_inputs(args.inputs)
    several = ranks.size > 1
    show = args.progress if args.progress is not None else several or (len(paths) > 1 and sys.stderr.isatty())
    callback = PrintingCallback(show, lines=several, label=f"{ranks.label}: " if several else "")
    settings = common.settings_json(ocr=common.model_source(args.model), decoding=decoding)
    job, result = run_crop_job(processor, paths, errors, args.output, settings, callback, ranks, args.batch_size,
                               decoding, args.force, args.wait)  # fmt: skip
    if ranks.rank != 0:
        return 0  # rank 0's status is the run's: a rank that exits with 1 makes mlx.launch stop the others
    if result.status == "refused":
        return 2
    if result.status == "failed":
        return 1
    without = f", {len(errors)} input(s) without images" if errors else ""
    print(
        f"{job.what}: {len(job.paths)} crops ({result.done} read now, {len(job.paths) - result.pending} done before, "
        f"{result.failed} failed{without}) {ranks.summary(result.by_rank)} in {time.perf_counter() - began:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return 1 if result.failed or errors else 0
