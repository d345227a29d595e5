"""One side of the detector benchmark, in a process of its own.

    python -m benchmarks.detect {mlx|torch} --model M --pages F... --out side.json [options]

Load time (imports included, in this fresh process), then per page, after a warm-up: preprocessing,
the model and post-processing, each ending with the side's synchronization; pages per second at
several batch sizes; memory (RSS growth over the loaded model on a CPU); and the detections, which
the orchestrator compares.
"""

from __future__ import annotations

import argparse
import json
import statistics
from itertools import cycle, islice

from .sides import MlxDetector, TorchDetector, peak_rss_bytes, rss_bytes, timed


def _detect_all(side, pages: list, batch_size: int, threshold: float) -> None:
    for i in range(0, len(pages), batch_size):
        pixels, sizes = side.preprocess(pages[i : i + batch_size])
        side.postprocess(side.model(pixels), sizes, threshold)


def run(args) -> dict:
    from PIL import Image

    side = MlxDetector() if args.side == "mlx" else TorchDetector(args.torch_device)
    _, load_s = timed(side.load, args.model)
    rss_loaded = rss_bytes()
    pages = [Image.open(p).convert("RGB") for p in args.pages]  # both sides get RGB: an L page has 1 channel
    side.postprocess(side.model(side.preprocess(pages[:1])[0]), [(1, 1)], args.threshold)  # warm-up
    per_page, detections = {}, {}
    for path, page in zip(args.pages, pages, strict=True):
        (pixels, sizes), t_pre = timed(side.preprocess, [page])
        raw, t_model = timed(side.model, pixels)
        found, t_post = timed(side.postprocess, raw, sizes, args.threshold)
        per_page[path] = {"preprocess_s": t_pre, "model_s": t_model, "postprocess_s": t_post,
                          "total_s": t_pre + t_model + t_post, "size": [page.width, page.height]}  # fmt: skip
        detections[path] = found[0]
    throughput = {}
    for batch_size in args.batch_sizes:
        work = list(islice(cycle(pages), max(args.throughput_pages, batch_size)))
        side.model(side.preprocess(work[:batch_size])[0])  # warm-up at this batch shape
        _, seconds = timed(_detect_all, side, work, batch_size, args.threshold)
        throughput[str(batch_size)] = {"pages_per_s": len(work) / seconds, "pages": len(work)}
    peak = peak_rss_bytes()
    stat = {
        key: statistics.median(v[key] for v in per_page.values())
        for key in next(iter(per_page.values()))
        if key != "size"
    }
    return {
        "facts": side.facts(),
        "load_s": load_s,
        "per_page": per_page,
        "median": stat,
        "throughput": throughput,
        "memory": {
            "rss_loaded_bytes": rss_loaded,
            "rss_peak_bytes": peak,
            "rss_growth_bytes": peak - rss_loaded if rss_loaded else None,
        },  # fmt: skip
        "detections": detections,
        "threshold": args.threshold,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detect")
    parser.add_argument("side", choices=["mlx", "torch"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--pages", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--threshold", type=float, default=0.3)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--throughput-pages", type=int, default=8)
    parser.add_argument("--torch-device", default="auto")
    args = parser.parse_args(argv)
    results = run(args)  # measured first: an interrupted run leaves no output file behind
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
