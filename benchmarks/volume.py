"""Memory over a whole volume, in a process of its own: a generated volume (pages of several sizes,
a tall strip among them) read by ``read_library`` as ``mlx-mangaocr mokuro`` reads it, with the RSS
recorded after each page, the peak, the time, and the decoder's row-steps against what the crops
needed alone.

    python -m benchmarks.volume --model OCR --detector DETECTOR|truth --pages 40 [--page-group N] --out v.json

``--detector truth`` finds each generated page's true text boxes (``testing.page_truth``): about
as many crops a page as a real volume has, without a detector's cost.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mlx_mangaocr  # noqa: F401  (first: it loads OpenBLAS, which must come before mlx.core)
from testing.pages import make_volume

from .sides import facts, peak_rss_bytes, rss_bytes, timed


def run(args) -> dict:
    from mlx_mangaocr.pipelines.pages.reader import PageReader
    from mlx_mangaocr.pipelines.volumes.job import LibraryCallback, read_library
    from testing.page_truth import TruthDetector

    if args.buffer_pool_mb >= 0:
        import mlx.core as mx

        mx.set_cache_limit(int(args.buffer_pool_mb * 2**20))
    volume = Path(args.folder) / "vol"
    truths = make_volume(volume, args.pages)
    ocr = mlx_mangaocr.load_ocr(args.model)
    detector = TruthDetector(truths) if args.detector == "truth" else mlx_mangaocr.load_detector(args.detector)
    reader = PageReader(ocr, detector, decoding={"num_beams": 1} if args.decoding == "greedy" else {})
    import mlx.core as mx

    rss, pool, live = [], [], []

    class Record(LibraryCallback):
        def on_advance(self, count: int) -> None:
            rss.extend([rss_bytes()] * count)
            pool.extend([mx.get_cache_memory()] * count)  # MLX's pool of freed buffers
            live.extend([mx.get_active_memory()] * count)  # MLX's arrays alive

    loaded = rss_bytes()
    result, seconds = timed(read_library, reader, [volume], "{}", Record(), None, args.batch_size, True, 0.0,
                            256 * 2**20, args.page_group)  # fmt: skip
    stats = ocr.stats
    return {
        "facts": facts("mlx"),
        "pages": args.pages,
        "page_group": args.page_group,
        "buffer_pool_mb": args.buffer_pool_mb,
        "batch_size": args.batch_size,
        "detector": args.detector,
        "seconds": seconds,
        "pages_per_s": args.pages / seconds,
        "rss_loaded_bytes": loaded,
        "rss_after_page_bytes": rss,
        "mlx_pool_after_page_bytes": pool,
        "mlx_live_after_page_bytes": live,
        "rss_peak_bytes": peak_rss_bytes(),
        "crops": stats.images,
        "row_steps": stats.row_steps,
        "needed_row_steps": stats.needed_row_steps,
        "failed": result.failed,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.volume", allow_abbrev=False)
    parser.add_argument("--model", required=True)
    parser.add_argument("--detector", required=True, help="a detector folder, or 'truth'")
    parser.add_argument("--pages", type=int, default=40)
    parser.add_argument("--page-group", type=int, help="default: the library's (PAGE_GROUP)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--decoding", choices=["beam", "greedy"], default="greedy")
    parser.add_argument("--folder", required=True, help="where the generated volume is written")
    parser.add_argument("--buffer-pool-mb", type=float, default=-1.0,
                        help="cap MLX's pool of freed buffers (mx.set_cache_limit), as mokuro's option "
                        "(default -1: MLX's own)")  # fmt: skip
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    results = run(args)  # measured first: an interrupted run leaves no output file behind
    Path(args.out).write_text(json.dumps(results, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
