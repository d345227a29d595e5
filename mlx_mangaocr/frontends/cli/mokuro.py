"""``mlx-mangaocr mokuro LIBRARY_OR_VOLUME...``: volumes to ``VOLUME.mokuro`` files, resumable, over
``mlx.launch`` ranks too (``pipelines.volumes``).

    mlx-mangaocr mokuro "Title/Volume 01" "Title/Volume 02.cbz"   # write Title/Volume 01.mokuro, ...
    mlx-mangaocr mokuro ~/Manga                                   # a library: every volume in it
"""

from __future__ import annotations

import sys
import time

from ...core.names import display_name
from ...core.ranks import DistributedError, Ranks
from ...pipelines.volumes.job import LibraryCallback, VolumeSummary, read_library
from ...pipelines.volumes.volume import MAX_MEMBER_BYTES
from . import common
from .common import PrintingCallback, error
from .pages import add_page_options, load_reader, with_buffer_pool


def build_parser():
    p = common.parser(
        "mokuro",
        "Volumes (folders of pages, searched recursively, or .cbz/.zip) and libraries of them: write "
        "VOLUME.mokuro beside each; an interrupted run resumes where it stopped.",
    )
    p.add_argument("inputs", nargs="+", metavar="LIBRARY_OR_VOLUME", help="volumes, or folders of volumes")
    add_page_options(p)
    p.add_argument("--force", action="store_true", help="read volumes that already have their .mokuro")
    common.add_wait(p, "volume")
    p.add_argument(
        "--max-member-mb",
        type=common.positive,
        default=MAX_MEMBER_BYTES / 2**20,
        metavar="MB",
        help=f"refuse an archive member that inflates to more than MB megabytes (default "
        f"{MAX_MEMBER_BYTES // 2**20}); it bounds the memory one page can take before it is decoded",
    )
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    return common.with_pixel_limit(args, lambda: with_buffer_pool(args, lambda: _run(args)))


class _Report(PrintingCallback, LibraryCallback):
    """Each volume's line on rank 0 (the other ranks print their own progress lines)."""

    def __init__(self, show: bool, ranks: Ranks):
        several = ranks.size > 1
        super().__init__(show, lines=several, label=f"{ranks.label}: " if several else "", unit="pages")
        self.ranks = ranks

    def on_volume(self, summary: VolumeSummary) -> None:
        if self.ranks.rank != 0 or summary.status != "written":
            return
        by_rank = ", ".join(f"{c[0]} by rank {r}" for r, c in enumerate(summary.by_rank))
        by_rank = f": {by_rank}" if self.ranks.size > 1 else ""
        print(
            f"{display_name(summary.mokuro)}: {summary.read + summary.cached} of {summary.pages} pages "
            f"({summary.read} read{by_rank}, {summary.cached} from the cache, {summary.failed} could not be read)",
            file=sys.stderr,
            flush=True,
        )


def _run(args) -> int:
    began = time.perf_counter()
    try:
        ranks = Ranks.init()
    except DistributedError as e:
        error(str(e))
        return 2
    reader = load_reader(args)
    if reader is None:
        return 2
    decoding = common.decoding_of(args)
    settings = common.settings_json(
        ocr=common.model_source(args.model),
        detector=common.model_source(args.detector),
        left_to_right=args.left_to_right,
        decoding=decoding,
    )
    show = args.progress if args.progress is not None else ranks.size > 1 or sys.stderr.isatty()
    report = _Report(show, ranks)
    try:
        result = read_library(reader, args.inputs, settings, report, ranks, args.batch_size, args.force, args.wait,
                              int(args.max_member_mb * 2**20), args.page_group)  # fmt: skip
    except DistributedError as e:
        error(str(e))
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: the pages read so far are kept in each volume's VOLUME.mokuro-cache", file=sys.stderr)
        return 130
    if ranks.rank == 0 and (ranks.size > 1 or result.volumes > 1):
        before = f" ({result.done_before} done before)" if result.done_before else ""
        print(
            f"done: {result.written} of {result.volumes} volume(s){before}, {sum(c[0] for c in result.by_rank)} pages "
            f"read, {result.cached} from the cache, {sum(c[1] for c in result.by_rank)} could not be read, "
            f"{ranks.summary(result.by_rank)} in {time.perf_counter() - began:.1f} s",
            file=sys.stderr,
            flush=True,
        )
    if ranks.rank != 0:
        return 0  # rank 0's status is the run's: a rank that exits with 1 makes mlx.launch stop the others
    return 1 if result.failed or report.failed else 0
