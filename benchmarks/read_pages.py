"""One side of the page benchmark, in a process of its own.

    python -m benchmarks.read_pages {mlx|torch} --ocr M --detector D --pages F... --out side.json [options]

Whole pages to text: detection, clean-up, reading order, crops and OCR, with the same rules on both
sides (``mlx_mangaocr.pipelines.pages``; the PyTorch side is ``testing/torch_pages.py``). For each batch
size, after a warm-up read at that batch size on a small generated page: pages per second over all
the pages. On the MLX side the batch size is ``read_pages``' (pages per group, crops per OCR batch,
detector inputs per batch); on the PyTorch side batch 1 is manga-ocr's ``generate`` on one crop at a
time, as mokuro and comic-translate call it, and batch 16 the same pipeline on batches of 16 crops.
Memory: process RSS growth over the loaded models on a CPU, the device peak on a GPU.
"""

from __future__ import annotations

import argparse
import json

from . import sides
from .sides import peak_rss_bytes, rss_bytes, timed


def load(side: str, ocr: str, detector: str, device: str, decoding: dict):
    if side == "mlx":
        import mlx_mangaocr  # first: it loads OpenBLAS, which must come before mlx.core

        return mlx_mangaocr.load_page_reader(ocr, detector, **decoding)
    from testing.torch_pages import torch_page_reader

    return torch_page_reader(ocr, detector, device=device, decoding=decoding)


def run(args) -> dict:
    from PIL import Image

    from testing.pages import make_page

    decoding = {"num_beams": 1} if args.decoding == "greedy" else {}
    if args.max_length:
        decoding["max_length"] = args.max_length
    reader, load_s = timed(load, args.side, args.ocr, args.detector, args.torch_device, decoding)
    rss_loaded = rss_bytes()
    pages = [Image.open(p).convert("RGB") for p in args.pages]
    warm = make_page(99, width=500, height=700, rows=2, cols=1).image
    throughput, found = {}, None
    for batch_size in args.batch_sizes:
        list(reader.read_pages([warm], batch_size=batch_size))
        read, seconds = timed(lambda size=batch_size: list(reader.read_pages(pages, batch_size=size)))
        throughput[str(batch_size)] = {"pages_per_s": len(pages) / seconds, "seconds": seconds}
        found = found or read
    peak = peak_rss_bytes()
    ocr = reader.ocr.side if args.side == "torch" else None
    facts = sides.facts("torch", ocr.device) if ocr else sides.facts("mlx")
    memory = {"rss_loaded_bytes": rss_loaded, "rss_peak_bytes": peak,
              "rss_growth_bytes": peak - rss_loaded if rss_loaded else None}  # fmt: skip
    if ocr and ocr.device == "cuda":
        memory["device_peak_bytes"] = int(ocr.torch.cuda.max_memory_allocated())
    return {
        "facts": facts,
        "load_s": load_s,
        "decoding": decoding,
        "throughput": throughput,
        "memory": memory,
        "blocks": [len(p.blocks) for p in found],
        "pages": {
            path: [[list(b.box), b.text] for b in page.blocks] for path, page in zip(args.pages, found, strict=True)
        },
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.read_pages")
    parser.add_argument("side", choices=["mlx", "torch"])
    parser.add_argument("--ocr", required=True)
    parser.add_argument("--detector", required=True)
    parser.add_argument("--pages", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--decoding", choices=["beam", "greedy"], default="beam")
    parser.add_argument("--max-length", type=int, help="cap on each crop's decoding (start token included)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--torch-device", default="auto")
    args = parser.parse_args(argv)
    results = run(args)  # measured first: an interrupted run leaves no output file behind
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
