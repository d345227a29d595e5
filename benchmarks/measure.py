"""One side's measurements, in a process of its own (so memory and BLAS threads are its own).

    python -m benchmarks.measure {mlx|torch} --model M --images F... --out side.json [options]

Warm-up runs are excluded. Per image and decoding mode it times preprocessing, the encoder and
the whole pipeline (preprocess + generate + text); decode time = generate - encoder. It also
times fixed decode lengths (end token banned until the length is reached, on both sides),
throughput at several batch sizes, and reads memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
from itertools import cycle, islice
from pathlib import Path

from PIL import Image

from .sides import MODES, MlxSide, TorchSide, peak_rss_bytes, rss_bytes, timed


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"median": statistics.median(ordered), "p90": p90, "mean": statistics.fmean(ordered), "n": len(ordered)}


def _end_to_end(side, image, settings: dict) -> str:
    return side.text(side.generate(side.preprocess([image]), settings)[0])


def _batches(side, images: list, settings: dict, batch_size: int) -> None:
    for i in range(0, len(images), batch_size):
        for ids in side.generate(side.preprocess(images[i : i + batch_size]), settings):
            side.text(ids)


def run_image(side, image, settings: dict) -> dict:
    """Times for one image: preprocessing, encoder, generate (from pixels), whole pipeline."""
    pixels, t_pre = timed(side.preprocess, [image])
    _, t_enc = timed(side.encode, pixels)
    ids, t_gen = timed(side.generate, pixels, settings)
    text, t_e2e = timed(_end_to_end, side, image, settings)
    new_tokens = len(ids[0]) - 1
    return {
        "ids": ids[0],
        "text": text,
        "new_tokens": new_tokens,
        "preprocess_s": t_pre,
        "encoder_s": t_enc,
        "generate_s": t_gen,
        "end_to_end_s": t_e2e,
        "decode_per_step_s": max(t_gen - t_enc, 0.0) / max(new_tokens, 1),
    }


def measure_mode(side, images: list, names: list[str], settings: dict, repeat: int) -> dict:
    runs = {
        name: [run_image(side, img, settings) for _ in range(repeat)] for img, name in zip(images, names, strict=True)
    }
    per_image = {
        name: {"ids": r[0]["ids"], "text": r[0]["text"], "new_tokens": r[0]["new_tokens"]} for name, r in runs.items()
    }
    flat = [run for r in runs.values() for run in r]
    total_tokens = sum(run["new_tokens"] for run in flat)
    total_decode = sum(max(run["generate_s"] - run["encoder_s"], 0.0) for run in flat)
    return {
        "per_image": per_image,
        "preprocess_s": summary([r["preprocess_s"] for r in flat]),
        "encoder_s": summary([r["encoder_s"] for r in flat]),
        "end_to_end_s": summary([r["end_to_end_s"] for r in flat]),
        "decode_per_step_s": total_decode / max(total_tokens, 1),
        "end_to_end_per_token_s": sum(r["end_to_end_s"] for r in flat) / max(total_tokens, 1),
        "new_tokens_mean": total_tokens / len(flat),
    }


def measure_fixed(side, images: list, settings: dict, length: int) -> dict:
    """Exactly ``length`` new tokens per image (end token banned before, max length after)."""
    fixed = {**settings, "min_length": length + 1, "max_length": length + 1}
    steps, e2e = [], []
    for image in images:
        pixels = side.preprocess([image])
        _, t_enc = timed(side.encode, pixels)
        ids, t_gen = timed(side.generate, pixels, fixed)
        assert len(ids[0]) == length + 1, f"expected {length} new tokens, got {len(ids[0]) - 1}"
        steps.append(max(t_gen - t_enc, 0.0) / length)
        e2e.append(t_gen)
    return {"decode_per_step_s": statistics.median(steps), "generate_s": summary(e2e)}


def measure_throughput(side, images: list, settings: dict, batch_size: int, count: int) -> dict:
    batch_images = list(islice(cycle(images), count))
    _, elapsed = timed(_batches, side, batch_images, settings, batch_size)
    return {"images": count, "seconds": elapsed, "images_per_s": count / elapsed}


def measure_compiled_step(side, images: list, settings: dict) -> dict:
    """MLX only: decode time per step with the step compiled (``mx.compile``) and not, image by
    image in alternation, at natural lengths; and whether the token ids are the same."""
    processor, default = side.processor, side.processor.compile_step
    totals = {"eager": [0.0, 0], "compiled": [0.0, 0]}
    ids = {"eager": [], "compiled": []}
    for compiled in (False, True):  # warm-up, excluded: the first compiled call traces
        processor.compile_step = compiled
        side.generate(side.preprocess(images[:1]), settings)
    for image in images:
        pixels = side.preprocess([image])
        _, t_enc = timed(side.encode, pixels)
        for name, compiled in (("eager", False), ("compiled", True)):
            processor.compile_step = compiled
            out, t_gen = timed(side.generate, pixels, settings)
            totals[name][0] += max(t_gen - t_enc, 0.0)
            totals[name][1] += len(out[0]) - 1
            ids[name].append(out[0])
    processor.compile_step = default
    per_step = {name: total / max(tokens, 1) for name, (total, tokens) in totals.items()}
    return {
        "eager_decode_per_step_s": per_step["eager"],
        "compiled_decode_per_step_s": per_step["compiled"],
        "ids_identical": sum(a == b for a, b in zip(ids["eager"], ids["compiled"], strict=True)),
        "images": len(images),
        "default": "compiled" if default else "eager",
    }


def run(args) -> dict:
    side = MlxSide(args.model, args.dtype) if args.side == "mlx" else TorchSide(args.model, args.torch_device)
    side.load()
    rss_loaded = rss_bytes()
    paths = [Path(p) for p in args.images]
    images = [Image.open(p).copy() for p in paths]
    names = [p.name for p in paths]
    modes = {m: {**MODES[m], **({"max_length": args.max_length} if args.max_length else {})} for m in args.decoding}
    # Warm-up, excluded: one image per mode, and one batch of the largest size.
    for settings in modes.values():
        side.generate(side.preprocess(images[:1]), settings)
        side.generate(side.preprocess(list(islice(cycle(images), max(args.batch_sizes)))), settings)
    side.reset_peak()
    result: dict = {"side": side.name, "facts": side.facts(), "modes": {}}
    for mode in args.decoding:
        settings = modes[mode]
        out = measure_mode(side, images, names, settings, args.repeat)
        out["fixed_length"] = {str(n): measure_fixed(side, images, settings, n) for n in args.fixed_lengths}
        out["throughput"] = {
            str(bs): measure_throughput(side, images, settings, bs, args.throughput_images) for bs in args.batch_sizes
        }
        if args.side == "mlx" and args.compile_comparison:
            out["compiled_step"] = measure_compiled_step(side, images, settings)
        result["modes"][mode] = out
    result["memory"] = {
        **side.memory(),
        "rss_after_load_bytes": rss_loaded,
        "process_peak_rss_bytes": peak_rss_bytes(),
        "rss_growth_bytes": (peak_rss_bytes() - rss_loaded) if rss_loaded else None,
    }
    if args.reference and args.side == "torch":
        result["margins"] = divergence_margins(
            side, images, names, result, json.loads(Path(args.reference).read_text())
        )
    return result


def divergence_margins(side, images, names, ours: dict, reference: dict) -> dict:
    """Where the other side's ids differ: first differing step, and this side's logit margin there
    (logit of its own token minus logit of the other side's token, same prefix)."""
    out = {}
    for mode, data in ours["modes"].items():
        other = reference["modes"].get(mode, {}).get("per_image", {})
        for image, name in zip(images, names, strict=True):
            mine, theirs = data["per_image"][name]["ids"], other.get(name, {}).get("ids")
            if theirs is None or mine == theirs:
                continue
            step = next(
                (i for i, (a, b) in enumerate(zip(mine, theirs, strict=False)) if a != b), min(len(mine), len(theirs))
            )
            entry = {"first_differing_step": step}
            if 0 < step < min(len(mine), len(theirs)):
                logits = side.step_logits(side.preprocess([image]), mine[:step])[step - 1]
                entry["logit_margin"] = float(logits[mine[step]] - logits[theirs[step]])
            out.setdefault(mode, {})[name] = entry
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.measure")
    parser.add_argument("side", choices=["mlx", "torch"])
    parser.add_argument("--model", required=True)
    parser.add_argument("--images", nargs="+", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--decoding", nargs="+", choices=list(MODES), default=list(MODES))
    parser.add_argument("--dtype", default=None)
    parser.add_argument("--torch-device", default="auto")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--throughput-images", type=int, default=16)
    parser.add_argument("--fixed-lengths", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--max-length", type=int, help="cap decoding at this max_length (start token included)")
    parser.add_argument("--compile-comparison", action="store_true", help="MLX: time the step compiled and not")
    parser.add_argument("--reference", help="the other side's JSON, to find where the ids differ")
    args = parser.parse_args(argv)
    Path(args.out).write_text(json.dumps(run(args), indent=1, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
