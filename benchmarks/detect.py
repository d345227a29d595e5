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
import time
from itertools import cycle, islice

from .sides import peak_rss_bytes, rss_bytes


class MlxDetector:
    name = "mlx"

    def load(self, model: str) -> None:
        import mlx_mangaocr  # first: it loads OpenBLAS, which must come before mlx.core  # noqa: I001
        import mlx.core as mx
        from mlx_mangaocr.detection.postprocess import post_process

        self.mx, self.post = mx, post_process
        self.detector = mlx_mangaocr.load_detector(model)

    def preprocess(self, pages):
        return self.detector.preprocess(pages)

    def model(self, pixels):
        out = self.detector.run(pixels)  # evaluated
        return out.logits, out.boxes

    def postprocess(self, raw, sizes, threshold):
        import numpy as np

        logits, boxes = (np.array(a) for a in raw)
        config = self.detector.config
        return [
            [(d.label, list(d.box), d.score) for d in self.post(logits[i], boxes[i], s, threshold, config.id2label)]
            for i, s in enumerate(sizes)
        ]

    def facts(self) -> dict:
        from mlx_mangaocr import _blas

        return {
            "mlx_version": self.mx.__version__,
            "device": str(self.mx.default_device()),
            "blas": _blas.loaded_blas or "MLX's bundled BLAS",
        }


class TorchDetector:
    name = "torch"

    def __init__(self, device: str):
        self.requested = device

    def load(self, model: str) -> None:
        import torch
        from transformers import RTDetrImageProcessor, RTDetrV2ForObjectDetection

        from .sides import TorchSide

        self.torch = torch
        self.device = TorchSide.pick_device(self.requested)
        self.processor = RTDetrImageProcessor.from_pretrained(model)  # the PIL backend without torchvision
        self.net = RTDetrV2ForObjectDetection.from_pretrained(model).eval().to(self.device)

    def preprocess(self, pages):  # RGB pages (run() converts them once, untimed), as comic-translate feeds it
        pixels = self.processor(pages, return_tensors="pt").pixel_values.to(self.device)
        return pixels, [(p.height, p.width) for p in pages]

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def model(self, pixels):
        with self.torch.no_grad():
            out = self.net(pixels)
        self.sync()
        return out

    def postprocess(self, raw, sizes, threshold):
        labels = self.net.config.id2label
        results = self.processor.post_process_object_detection(raw, threshold=threshold, target_sizes=sizes)
        return [
            [
                (labels[int(lab)], b.tolist(), float(s))
                for lab, b, s in zip(r["labels"], r["boxes"], r["scores"], strict=True)
            ]
            for r in results
        ]

    def facts(self) -> dict:
        return {
            "torch_version": self.torch.__version__,
            "device": self.device,
            "threads": self.torch.get_num_threads(),
            "blas": "MKL" if self.torch.backends.mkl.is_available() else "other",
        }


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def run(args) -> dict:
    from PIL import Image

    start = time.perf_counter()
    side = MlxDetector() if args.side == "mlx" else TorchDetector(args.torch_device)
    side.load(args.model)
    load_s = time.perf_counter() - start
    rss_loaded = rss_bytes()
    pages = [Image.open(p).convert("RGB") for p in args.pages]  # both sides get RGB: an L page has 1 channel
    side.postprocess(side.model(side.preprocess(pages[:1])[0]), [(1, 1)], args.threshold)  # warm-up
    per_page, detections = {}, {}
    for path, page in zip(args.pages, pages, strict=True):
        (pixels, sizes), t_pre = _timed(side.preprocess, [page])
        raw, t_model = _timed(side.model, pixels)
        found, t_post = _timed(side.postprocess, raw, sizes, args.threshold)
        per_page[path] = {"preprocess_s": t_pre, "model_s": t_model, "postprocess_s": t_post,
                          "total_s": t_pre + t_model + t_post, "size": [page.width, page.height]}  # fmt: skip
        detections[path] = found[0]
    throughput = {}
    for batch_size in args.batch_sizes:
        work = list(islice(cycle(pages), max(args.throughput_pages, batch_size)))
        side.model(side.preprocess(work[:batch_size])[0])  # warm-up at this batch shape
        begin = time.perf_counter()
        for i in range(0, len(work), batch_size):
            chunk = work[i : i + batch_size]
            pixels, sizes = side.preprocess(chunk)
            side.postprocess(side.model(pixels), sizes, args.threshold)
        throughput[str(batch_size)] = {"pages_per_s": len(work) / (time.perf_counter() - begin), "pages": len(work)}
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
