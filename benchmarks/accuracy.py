"""Accuracy, both sides: ``mlx-mangaocr eval`` and upstream manga-ocr on the same labelled set.

    python -m benchmarks.accuracy {mlx|torch} --model M --data DATA --out side.json [--batch-size B]

The MLX side is the eval pipeline itself (``pipelines.evaluation.evaluate``: continuous batching,
``--batch-size`` crops decoding together). The PyTorch side is upstream ``manga_ocr.MangaOcr``, one
crop at a time as its users call it. Both read the same samples (``pipelines.datasets``) after a
warm-up crop, and report their predictions and seconds; the harness scores both sides' predictions
with the same code, so equal predictions give equal figures. Memory: the peak RSS growth over the
loaded model.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .sides import facts, peak_rss_bytes, rss_bytes, timed


def _mlx(args, samples) -> dict:
    import mlx_mangaocr  # noqa: F401  (first: it loads OpenBLAS, which must come before mlx.core)
    from mlx_mangaocr.pipelines.evaluation import evaluate
    from mlx_mangaocr.pipelines.ocr import load_ocr

    ocr = load_ocr(args.model)
    loaded = rss_bytes()
    evaluate([("warm-up", ocr)], samples[:1], batch_size=args.batch_size)
    result, seconds = timed(evaluate, [(args.model, ocr)], samples, "manga-ocr", args.batch_size)
    return {"facts": facts("mlx"), "rss_loaded_bytes": loaded, "seconds": seconds, "batch_size": args.batch_size,
            "predictions": [r["prediction"] for r in result.records], "summary": result.summaries[0]}  # fmt: skip


def _torch(args, samples) -> dict:
    import manga_ocr

    mocr = manga_ocr.MangaOcr(args.model, force_cpu=args.torch_device == "cpu")  # warms up on its example
    loaded = rss_bytes()
    predictions, seconds = timed(lambda: [mocr(s.image()) for s in samples])
    device = str(mocr.model.device).split(":")[0]
    return {"facts": facts("torch", device), "rss_loaded_bytes": loaded, "seconds": seconds, "batch_size": 1,
            "predictions": predictions}  # fmt: skip


def run(args) -> dict:
    from mlx_mangaocr.pipelines.datasets import open_dataset

    data = open_dataset(args.data)
    samples = data.samples[: args.limit] if args.limit else data.samples
    out = (_mlx if args.side == "mlx" else _torch)(args, samples)
    peak = peak_rss_bytes()
    out.update(samples=len(samples), samples_per_s=len(samples) / out["seconds"], rss_peak_bytes=peak,
               rss_growth_bytes=peak - out["rss_loaded_bytes"] if out["rss_loaded_bytes"] else None,
               labels=[s.text for s in samples], vertical=[_vertical(s) for s in samples])  # fmt: skip
    return out


def _vertical(sample) -> bool:
    image = sample.image()
    return image.height > image.width


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.accuracy")
    p.add_argument("side", choices=["mlx", "torch"])
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="a labelled set mlx-mangaocr eval reads (a synth folder here)")
    p.add_argument("--limit", type=int)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--torch-device", default="auto")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    Path(args.out).write_text(json.dumps(run(args), ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
