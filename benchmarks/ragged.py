"""The ragged benchmark: OCR traffic whose output lengths are ragged, as a mokuro volume's are.

    python -m benchmarks.ragged pool --model MLX_MODEL --folder DIR --out pool.json
    python -m benchmarks.ragged {mlx|torch} --model M --workload workload.json --out side.json [options]

The workload. Real volumes average about 6 tokens a crop, with a tail to 80 and more and now and
then a crop that runs to ``max_length``. The synthetic checkpoint's lengths depend on the image,
so the workload is drawn from a pool of crops of the shared example images (``make_pool``) whose
lengths the MLX side measures first (``pool``: every crop's ids, greedy and beam, exact to decoding
it alone, up to a cap of 99 new tokens). For each target length of ``target_lengths`` (most short,
a tail at 20 to 80 tokens, one at ``max_length``, in a shuffled order of arrival) it takes the crop
whose length is nearest.
The lengths the workload really has are reported with it.

The sides. MLX: one image at a time, a static batch of 16 and continuous batching at 16
(``iter_ids``), with the decoder row-steps each ran against the row-steps the images need alone.
PyTorch: transformers ``generate`` on padded batches of 16, as people batch manga-ocr today. Images
are decoded from their files before the clock starts. Texts are compared across all of them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .sides import MODES, TorchSide, facts, timed

CROPS_PER_IMAGE = 6


def make_pool(folder: Path, images: list[Path], seed: int = 0) -> list[Path]:
    """The example images and ``CROPS_PER_IMAGE`` random crops of each, written as PNG files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for source in images:
        image = Image.open(source).convert("RGB")
        crops = [image]
        for _ in range(CROPS_PER_IMAGE):
            w = max(8, int(image.width * rng.uniform(0.25, 1.0)))
            h = max(8, int(image.height * rng.uniform(0.15, 1.0)))
            x, y = int(rng.integers(0, image.width - w + 1)), int(rng.integers(0, image.height - h + 1))
            crops.append(image.crop((x, y, x + w, y + h)))
        for k, crop in enumerate(crops):
            path = folder / f"{source.stem}-{k}.png"
            if not path.is_file():
                crop.save(path)
            paths.append(path)
    return paths


def target_lengths(count: int, max_new: int, seed: int = 0) -> list[int]:
    """New-token lengths in order of arrival: one at ``max_new``, seven in a tail from 20 to 80,
    the rest short (1 + a geometric draw of mean 3, at most 15)."""
    rng = np.random.default_rng(seed)
    tail = [20, 30, 40, 50, 60, 70, 80]
    short = np.minimum(rng.geometric(1 / 3, size=count - len(tail) - 1), 14) + 1
    lengths = [max_new, *tail, *short.tolist()]
    rng.shuffle(lengths)
    return [int(n) for n in lengths]


def choose(pool: dict[str, int], targets: list[int], cap: int) -> list[str]:
    """For each target, the pool crop whose length is nearest (equally near ones in turn). Crops
    that ran to the pool's cap (``cap`` new tokens: longer, length unknown) only serve targets at
    or past the cap, the others only targets below it (if the pool has any of that kind)."""
    used: dict[str, int] = {}
    chosen = []
    for target in targets:
        names = sorted(n for n in pool if (pool[n] >= cap) == (target >= cap)) or sorted(pool)
        best = min(names, key=lambda n: (abs(pool[n] - target), used.get(n, 0), n))
        used[best] = used.get(best, 0) + 1
        chosen.append(best)
    return chosen


def workload(pool_file: Path, count: int, max_length: int) -> dict:
    """Each decoding's workload (crop paths in order of arrival) from the measured pool."""
    pool = json.loads(pool_file.read_text(encoding="utf-8"))
    cap = pool.pop("cap")
    targets = target_lengths(count, max_length - 1)
    out = {}
    for mode in MODES:
        lengths = {name: entry[mode] for name, entry in pool.items()}
        out[mode] = choose(lengths, targets, cap)
    return out


def lengths_summary(lengths: list[int]) -> dict:
    ordered = sorted(lengths)
    return {
        "mean": float(np.mean(ordered)),
        "median": float(np.median(ordered)),
        "p90": ordered[int(round(0.9 * (len(ordered) - 1)))],
        "max": ordered[-1],
        "at_most_15": sum(n <= 15 for n in ordered),
        "16_to_80": sum(16 <= n <= 80 for n in ordered),
        "over_80": sum(n > 80 for n in ordered),
    }


def _load_mlx(model: str):
    import mlx_mangaocr  # first: it loads OpenBLAS, which must come before mlx.core

    return mlx_mangaocr.load_ocr(model)


def run_pool(args) -> dict:
    processor = _load_mlx(args.model)
    from testing.synthetic import IMAGES

    paths = make_pool(Path(args.folder), list(IMAGES))
    out = {str(p): {} for p in paths}
    for mode, settings in MODES.items():
        capped = {**settings, "max_length": args.pool_cap + 1}  # longer ones: known to reach the cap
        for path, ids in zip(paths, processor.iter_ids(paths, batch_size=16, **capped), strict=True):
            out[str(path)][mode] = len(ids) - 1
    return {"cap": args.pool_cap, **out}


def run_mlx(args, work: dict) -> dict:
    processor = _load_mlx(args.model)
    configs = {"one at a time": (1, "continuous"), "static 16": (16, "static"), "continuous 16": (16, "continuous")}
    results = {}
    for mode in args.decoding:
        settings = MODES[mode]
        images = [Image.open(p).convert("RGB") for p in work[mode]]
        results[mode] = {}
        for name, (batch_size, scheduler) in configs.items():
            list(processor.iter_ids(images[: args.warmup], batch_size, scheduler, **settings))  # traces its shapes
            before = vars(processor.stats).copy()
            ids, seconds = timed(_all_ids, processor, images, batch_size, scheduler, settings)
            work_done = {k: v - before[k] for k, v in vars(processor.stats).items()}
            results[mode][name] = {
                "seconds": seconds,
                "images_per_s": len(images) / seconds,
                "texts": [processor.decode(i) for i in ids],
                "new_tokens": [len(i) - 1 for i in ids],
                "row_steps": work_done["row_steps"],
                "needed_row_steps": work_done["needed_row_steps"],
                "steps": work_done["steps"],
            }
    return {"facts": facts("mlx"), "modes": results}


def _all_ids(processor, images, batch_size: int, scheduler: str, settings: dict) -> list[list[int]]:
    return list(processor.iter_ids(images, batch_size, scheduler, **settings))


def _padded_batches(side, images, settings: dict) -> list[list[int]]:
    """transformers' way: padded batches of 16, each run until its longest image is done."""
    batches = (images[s : s + 16] for s in range(0, len(images), 16))
    return [ids for batch in batches for ids in side.generate(side.preprocess(batch), settings)]


def run_torch(args, work: dict) -> dict:
    side = TorchSide(args.model, args.torch_device)
    side.load()
    results = {}
    for mode in args.decoding:
        settings = MODES[mode]
        images = [Image.open(p).convert("RGB") for p in work[mode]]
        side.generate(side.preprocess(images[:2]), settings)  # warm-up
        ids, seconds = timed(_padded_batches, side, images, settings)
        results[mode] = {
            "padded 16": {
                "seconds": seconds,
                "images_per_s": len(images) / seconds,
                "texts": [side.text(i) for i in ids],
                "new_tokens": [len(i) - 1 for i in ids],
            }
        }
    return {"facts": side.facts(), "modes": results}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ragged")
    parser.add_argument("side", choices=["pool", "mlx", "torch"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--folder", help="pool: where the crops go")
    parser.add_argument("--pool-cap", type=int, default=99, help="pool: new tokens measured at most")
    parser.add_argument("--workload", help="mlx/torch: the workload JSON (crop paths per decoding)")
    parser.add_argument("--decoding", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--warmup", type=int, default=24, help="MLX: images run first at each setting (untimed)")
    parser.add_argument("--torch-device", default="auto", choices=["auto", "mps", "cuda", "cpu"])
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.side == "pool":
        result = run_pool(args)
    else:
        work = json.loads(Path(args.workload).read_text(encoding="utf-8"))
        result = run_mlx(args, work) if args.side == "mlx" else run_torch(args, work)
    Path(args.out).write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
