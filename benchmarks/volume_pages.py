"""Realistic pages, both sides: a volume's worth of pages with about 12 crops each, whose output
lengths are short with a tail, as mokuro's figures say (about 6 tokens a crop on average).

    python -m benchmarks.volume_pages pool --ocr MLX_OCR --max-length L --out pool.json
    python -m benchmarks.volume_pages {mlx|torch} --ocr M --detector D --pool pool.json --pages N \\
        --folder DIR --max-length L --out side.json

The pages. Generated pages of five sizes, a 700x4200 strip among them (``testing.pages.make_volume``),
3x3 panels with one or two text regions each. The synthetic full-size OCR checkpoint ends a crop
after a few tokens on some source crops and repeats a token up to ``max_length`` on others, so
``pool`` decodes each source crop (the shared examples' text crops) alone with the MLX model: the
pages paste the crops that end, and one that does not in about one region in 13, whose decoding is
cut at ``--max-length``: that is the tail. The lengths the pages really have are reported (the texts'
characters; this vocabulary has a token a character).

The detector. Each side's own detector runs on every page (a strip in slices), and its time counts;
the crops are the pages' true text boxes (``testing.page_truth``), since a random detector's boxes
are noise: 88 a page at threshold 0.3, where a volume has about 12.

The sides. MLX is ``read_pages`` at its defaults (16 crops decoding together, page group 1), and
again one crop at a time (``--batch-size 1``).
PyTorch runs as mokuro and comic-translate run their OCR: transformers' RT-DETR, then manga-ocr's
``generate`` on one crop at a time (``testing/torch_pages.py`` at batch 1), with the same page rules.
Both read the page files (decoding counts). Measured after a warm-up page: pages per second, the
detector's seconds and the rest, the peak RSS growth over the loaded models, the RSS after each page.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .sides import facts, peak_rss_bytes, rss_bytes, timed

REGIONS_PER_LOOPING = 13  # about one region in 13 pastes a crop that runs to max_length


def _pool(args) -> dict:
    import mlx_mangaocr  # noqa: I001  (first: it loads OpenBLAS, which must come before mlx.core)
    from PIL import Image

    from testing.pages import TEXT_CROPS

    ocr = mlx_mangaocr.load_ocr(args.ocr)
    lengths = {str(p): len(ocr.generate_ids([Image.open(p).convert("RGB")], max_length=args.max_length)[0])
               for p in TEXT_CROPS}  # fmt: skip
    ending = [p for p, n in lengths.items() if n < args.max_length]
    looping = [p for p, n in lengths.items() if n >= args.max_length]
    return {"max_length": args.max_length, "lengths": lengths, "ending": ending, "looping": looping[:1]}


def volume_crops(pool: dict) -> list[Path]:
    """The source crops the pages paste from: the ending ones, and a looping one about one time in
    ``REGIONS_PER_LOOPING``."""
    ending = [Path(p) for p in pool["ending"]] or [Path(p) for p in pool["looping"]]
    if not pool["looping"] or not pool["ending"]:
        return ending
    repeat = max(1, round((REGIONS_PER_LOOPING - 1) / len(ending)))
    return ending * repeat + [Path(pool["looping"][0])]


class TruthBoxes:
    """A detector stand-in that runs the side's own detector (timed) and returns the true boxes."""

    def __init__(self, detector, truths):
        from testing.page_truth import TruthDetector

        self.detector, self.truth, self.seconds = detector, TruthDetector(truths), 0.0

    def detect_batch(self, images, threshold=0.3):
        _, seconds = timed(self.detector.detect_batch, images, threshold)
        self.seconds += seconds
        return self.truth.detect_batch(images, threshold)


def _side(args) -> dict:
    from testing.pages import make_page, make_volume

    from .read_pages import load

    pool = json.loads(Path(args.pool).read_text(encoding="utf-8"))
    crops = volume_crops(pool)
    folder = Path(args.folder)
    truths = make_volume(folder / "pages", args.pages, crops=crops, rows=3, cols=3)
    warm = make_page(99, width=500, height=700, rows=2, cols=1, crops=crops)
    decoding = {"max_length": args.max_length}
    reader, load_s = timed(load, args.side, args.ocr, args.detector, args.torch_device, decoding)
    reader.detector = TruthBoxes(reader.detector, [*truths, warm])
    batch_size = args.batch_size or (16 if args.side == "mlx" else 1)
    list(reader.read_pages([warm.image], batch_size=batch_size))
    reader.detector.seconds = 0.0
    rss_loaded = rss_bytes()
    paths = [str(folder / "pages" / f"p{i:03d}.png") for i in range(args.pages)]
    rss, pages = [], []

    def read_all():
        for page in reader.read_pages(paths, batch_size=batch_size):
            pages.append(page)
            rss.append(rss_bytes())

    _, seconds = timed(read_all)
    ocr = reader.ocr.side if args.side == "torch" else None
    return {
        "facts": facts("torch", ocr.device) if ocr else facts("mlx"),
        "load_s": load_s,
        "batch_size": batch_size,
        "pages": args.pages,
        "seconds": seconds,
        "pages_per_s": args.pages / seconds,
        "detector_s": reader.detector.seconds,
        "crops": sum(len(p.blocks) for p in pages),  # text blocks (a long one may be read as several crops)
        "text_lengths": [len(b.text) for p in pages for b in p.blocks],
        "texts": [[b.text for b in p.blocks] for p in pages],
        "boxes": [[list(b.box) for b in p.blocks] for p in pages],
        "memory": {
            "rss_loaded_bytes": rss_loaded,
            "rss_peak_bytes": peak_rss_bytes(),
            "rss_growth_bytes": peak_rss_bytes() - rss_loaded if rss_loaded else None,
            "rss_after_page_bytes": rss,
        },  # fmt: skip
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.volume_pages", allow_abbrev=False)
    parser.add_argument("side", choices=["pool", "mlx", "torch"])
    parser.add_argument("--ocr", required=True)
    parser.add_argument("--detector", help="the side's detector (not for pool)")
    parser.add_argument("--pool", help="pool.json (not for pool)")
    parser.add_argument("--pages", type=int, default=10)
    parser.add_argument("--folder", help="where the side writes the generated pages")
    parser.add_argument("--max-length", type=int, default=48, help="cap on each crop's decoding (the tail's length)")
    parser.add_argument("--batch-size", type=int, help="crops decoding together (default: MLX 16, PyTorch 1)")
    parser.add_argument("--torch-device", default="auto")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.side != "pool" and not (args.detector and args.pool and args.folder):
        parser.error("a side needs --detector, --pool and --folder")
    results = _pool(args) if args.side == "pool" else _side(args)  # measured first: no partial output file
    Path(args.out).write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
