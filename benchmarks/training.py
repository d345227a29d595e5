"""Training, measured: does it learn, how fast, in how much memory, MLX against PyTorch.

    python -m benchmarks.training --out benchmarks/results/linux-cpu/training

1. **Data.** Short synthetic crops made by ``mlx-mangaocr synth``'s generator (``Synthesizer``),
   restricted so that a small model learns from random weights in the budget: ten hiragana
   (``--chars``; ``--kanji N`` for kana and N frequent kanji instead) drawn black on white
   (``synth --plain``; ``--no-plain`` for synth's manga styles), with lengths drawn from 1 to CHARS
   characters for each stage (a text ends at the first word boundary at or past its length, so a
   few run longer; the report gives the measured lengths). A training set and a held-out
   validation set (other seeds) for each stage's length.
2. **Step throughput, MLX against PyTorch,** each in its own process on the same batches (the last
   stage's texts): the same configuration, AdamW, clipping, dropout as the config says (0.1 in the
   decoder), training mode. Samples per second over ``--throughput-steps`` steps after a warm-up
   step; peak memory (RSS growth over the loaded model, the worker's own ``VmHWM``; MLX's
   ``mx.get_peak_memory`` too). For the small configuration at ``--batch-size``, and for the
   full-size model (manga-ocr-base's shape, 111 M parameters) at ``--full-batch``; and MLX's peak at
   batch 32, with and without ``--checkpoint-encoder``, the figure a 16 GB Mac needs
   (``mx.get_peak_memory`` here stands in for Metal's).
3. **The learning curve,** in ``--stages``, each ``mlx-mangaocr train`` from the last one's model
   (the first from random weights; the small configuration, ``Small``: a 4-layer ViT and the 2-layer
   BERT decoder, manga-ocr's 6144-token vocabulary), validating 8 times a stage: CER and exact match
   against steps, each stage's ``training.png``, and the stage's final model on the held-out crops
   by text length (what it learned to read: most crops of a 1-N set are short, so the averages
   hide it). The default: one glyph a crop for 1200 steps, then texts of 1-3 characters for 1200,
   then 1-10 for 2400, at lr 3e-4. From random weights, texts of mixed lengths stay at the label
   prior in this budget (MLX and PyTorch alike: the README gives what was tried), so the curve
   first teaches single glyphs; at lr 1e-3 even that stage stayed at chance for 1600 steps.

Writes ``training.json`` (every figure) and ``training.md`` (the tables) in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CURVE_CHARS = "あいうえおかきくけこ"  # what the curve's small model learns to read in about 30 CPU-minutes
CURVE_STAGES = ["1:1200", "3:1200", "10:2400"]  # a glyph at a time from random weights, then texts
KANA = [chr(c) for c in range(0x3041, 0x3097)] + [chr(c) for c in range(0x30A1, 0x30FB)] + ["ー"]
PUNCTUATION = list("。、！？…")


def charset(kanji: int) -> frozenset[str]:
    """Kana, a little punctuation and the ``kanji`` most frequent kanji of wordfreq's words."""
    import wordfreq

    seen: dict[str, None] = {}
    for word in wordfreq.top_n_list("ja", 50000):
        for c in word:
            if "\u4e00" <= c <= "\u9fff" and len(seen) < kanji:
                seen[c] = None
    return frozenset(KANA + PUNCTUATION + list(seen))


def make_data(folder: Path, count: int, seed: int, chars: frozenset[str], max_chars: int = 10, plain: bool = False,
              workers: int = 2) -> None:  # fmt: skip
    """``count`` synth crops with lengths drawn from 1-``max_chars`` characters of ``chars``
    (``plain``: synth's ``--plain``, black text on white)."""
    import numpy as np

    from mlx_mangaocr.pipelines.synth import Synthesizer, generate
    from mlx_mangaocr.pipelines.synth.fonts import FontCharsets

    if (folder / "labels.jsonl").is_file():
        return
    synth = Synthesizer(seed=seed, plain=plain)
    allowed = chars & synth.vocab
    synth.charsets = FontCharsets(frozenset(allowed))
    synth.source.lengths = np.arange(1, max_chars + 1)
    synth.source.length_p = np.full(max_chars, 1 / max_chars)
    if max_chars == 1:  # one glyph a crop: random characters (a word would run past one at its boundary)
        synth.source.content = []
    synth.settings.update(benchmark={"lengths": f"1-{max_chars} uniform", "chars": "".join(sorted(allowed))})
    generate(folder, count, synth, workers=workers)


@dataclass(frozen=True)
class Small:
    """The small configuration: a 4-layer ViT of ``hidden`` width on ``image``-pixel squares cut in
    ``patch``-pixel patches, and the 2-layer BERT decoder of the same width (heads of 64)."""

    image: int = 96
    patch: int = 8
    hidden: int = 128

    def __str__(self) -> str:
        return (f"{self.image}x{self.image} in {self.patch}-pixel patches, 4-layer {self.hidden}-wide ViT + "
                f"2-layer decoder")  # fmt: skip


def make_model(folder: Path, small: Small | None) -> None:
    """A random-weight checkpoint in the hub's layout: the small configuration, or the full size
    (``small`` None)."""
    from testing.synthetic import Spec, write_checkpoint

    if not (folder / "config.json").is_file():
        if small is None:
            spec = Spec(full=True, head_scale=1.0)
        else:
            spec = Spec(small=True, head_scale=1.0, image_size=small.image, patch_size=small.patch, hidden=small.hidden)
        write_checkpoint(folder, spec)


# --- the throughput worker (one side, one process) --------------------------------------------------


def _batches(data: Path, batch: int, count: int, limit: int):
    """``count`` batches of pixels (NHWC) and label ids, the first ``count * batch`` samples in
    order (the labels from ``LabelEncoder``, equal to the tokenizer's)."""
    from mlx_mangaocr.loading.ocr import load_checkpoint
    from mlx_mangaocr.models.ocr.labels import LabelEncoder
    from mlx_mangaocr.models.ocr.loss import label_array
    from mlx_mangaocr.pipelines.datasets import open_dataset

    checkpoint = load_checkpoint(limit)
    encoder = LabelEncoder(checkpoint.vocab)
    samples = open_dataset(data).samples[: batch * count]
    out = []
    for i in range(count):
        part = samples[i * batch : (i + 1) * batch]
        pixels = checkpoint.image_processor.batch([s.image() for s in part])
        out.append((pixels, label_array([encoder.encode(s.text, 300)[0] for s in part], encoder.pad_id)))
    return out


def worker(args) -> dict:
    from .sides import facts, peak_rss_bytes, rss_bytes

    batches = _batches(Path(args.data), args.batch_size, args.steps + 1, args.model)
    if args.side == "mlx":
        import mlx.core as mx

        from mlx_mangaocr.loading.ocr import load_checkpoint
        from mlx_mangaocr.models.ocr.loss import IGNORE, shift_right
        from mlx_mangaocr.pipelines.training.optimizer import make_optimizer, schedule
        from mlx_mangaocr.pipelines.training.step import Stepper, global_norm

        model = load_checkpoint(args.model).model
        model.train()
        model.encoder.checkpoint_layers = args.checkpoint_encoder
        opt = make_optimizer("adamw", schedule(5e-5, "linear", 0, 1000))
        opt.init(model.trainable_parameters())
        stepper = Stepper(model, opt, 1.0)
        loaded = rss_bytes()
        mx.reset_peak_memory()

        def step(pixels, labels):  # as ``mlx-mangaocr train`` steps: gradients evaluated, norm, update
            tokens = int((labels != IGNORE).sum())
            _, grads = stepper.gradients(pixels, shift_right(labels, 0, 2), labels, tokens)
            mx.eval(grads)  # the order sets the peak: with --checkpoint-encoder, 2.1 against 2.9 GB at batch 8
            norm = global_norm(grads)
            norm.item()  # the divergence check reads it
            stepper.update(grads, norm)
            mx.eval(model.parameters(), opt.state)

        side_facts = facts("mlx")
    else:
        import torch

        from testing import torch_training

        model = __import__("transformers").VisionEncoderDecoderModel.from_pretrained(args.model)
        model.train()
        params = [p for p in model.parameters()]
        opt = torch_training.make_optimizer("adamw", params, 5e-5, 0.0)
        loaded = rss_bytes()

        def step(pixels, labels):
            opt.zero_grad(set_to_none=True)
            tokens = int((labels != -100).sum())
            torch_training.batch_loss(model, pixels, labels, tokens).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()

        side_facts = facts("torch", "cpu")
    step(*batches[0])  # warm-up: traces and compiles, allocates the optimizer state
    began = time.perf_counter()
    for pixels, labels in batches[1:]:
        step(pixels, labels)
    seconds = time.perf_counter() - began
    peak = peak_rss_bytes()
    out = {"facts": side_facts, "batch_size": args.batch_size, "steps": args.steps, "seconds": seconds,
           "samples_per_s": args.batch_size * args.steps / seconds, "rss_loaded_bytes": loaded,
           "rss_peak_bytes": peak, "rss_growth_bytes": peak - loaded if loaded else None,
           "checkpoint_encoder": args.checkpoint_encoder}  # fmt: skip
    if args.side == "mlx":
        out["mlx_peak_memory_bytes"] = mx.get_peak_memory()
    return out


# --- the harness ------------------------------------------------------------------------------------


def _side(side: str, model: Path, data: Path, batch: int, steps: int, target: Path, resume: bool,
          checkpoint: bool = False) -> dict:  # fmt: skip
    if not (resume and target.is_file()):
        command = [sys.executable, "-m", "benchmarks.training", "worker", side, "--model", str(model), "--data",
                   str(data), "--batch-size", str(batch), "--steps", str(steps), "--out", str(target)]  # fmt: skip
        if checkpoint:
            command.append("--checkpoint-encoder")
        print("+", " ".join(command), file=sys.stderr, flush=True)
        subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(target.read_text())


def _pair(name: str, model: Path, data: Path, batch: int, steps: int, out: Path, resume: bool) -> dict:
    mlx = _side("mlx", model, data, batch, steps, out / f"{name}-mlx.json", resume)
    torch = _side("torch", model, data, batch, steps, out / f"{name}-torch.json", resume)
    return {"mlx": mlx, "torch": torch, "speed_ratio": mlx["samples_per_s"] / torch["samples_per_s"],
            "memory_ratio": mlx["rss_growth_bytes"] / torch["rss_growth_bytes"]}  # fmt: skip


def _curve(args, out: Path, name: str, model: Path, train: Path, val: Path, steps: int) -> dict:
    """One stage of the learning curve: ``mlx-mangaocr train`` from ``model`` into ``out/name``."""
    run = out / name
    seconds = out / f"{name}-seconds.txt"
    eval_every = max(1, steps // 8)
    if not (args.resume and (run / "training.json").is_file()
            and json.loads((run / "training.json").read_text()).get("status") == "done"):  # fmt: skip
        command = [sys.executable, "-m", "mlx_mangaocr", "train", "--model", str(model), "--train", str(train),
                   "--val", str(val), "--steps", str(steps), "--batch-size", str(args.batch_size), "--lr",
                   str(args.lr), "--warmup", str(args.warmup), "--eval-every", str(eval_every),
                   "--save-every", str(eval_every), "--output", str(run), "--no-progress",
                   *args.curve_options.split(),
                   *(["--resume"] if (run / "training.json").is_file() else [])]  # fmt: skip
        print("+", " ".join(command), file=sys.stderr, flush=True)
        began = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds.write_text(f"{time.perf_counter() - began:.1f}\n")
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    val_lines = [m for m in lines if "val_cer" in m]
    losses = [m for m in lines if "loss" in m]
    return {"name": name, "start": str(model.relative_to(out)) if model.is_relative_to(out) else str(model),
            "steps": steps, "batch_size": args.batch_size, "lr": args.lr, "warmup": args.warmup,
            "options": args.curve_options, "validation": val_lines, "first_loss": losses[0]["loss"],
            "last_loss": losses[-1]["loss"],
            "samples_per_s_median": sorted(m["samples_per_second"] for m in losses)[len(losses) // 2],
            "seconds": float(seconds.read_text()) if seconds.is_file() else None,
            "record": json.loads((run / "training.json").read_text())}  # fmt: skip


def _by_length(run: Path, val: Path) -> dict[str, dict]:
    """The stage's final model on the held-out crops, greedy, by label length: what it learned to
    read (the validation figures average over lengths, and most crops of a 1-N set are short)."""
    import mlx_mangaocr
    from mlx_mangaocr.pipelines.evaluation.scores import Sums, score

    rows = [json.loads(line) for line in (val / "labels.jsonl").read_text(encoding="utf-8").splitlines() if line]
    ocr = mlx_mangaocr.load_ocr(run)
    found = ocr.recognize([val / r["image"] for r in rows], batch_size=16, num_beams=1)
    sums: dict[int, Sums] = {}
    for row, got in zip(rows, found, strict=True):
        sums.setdefault(len(row["text"]), Sums()).add(score(row["text"], got.text, bool(row.get("vertical"))))
    return {str(k): v.figures() for k, v in sorted(sums.items())}


def _stage(text: str) -> tuple[int, int]:
    """``CHARS:STEPS``, both whole numbers of at least 1."""
    try:
        chars, steps = (int(x) for x in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected CHARS:STEPS, such as 10:1200") from None
    if chars < 1 or steps < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: CHARS and STEPS are at least 1")
    return chars, steps


def _mib(n) -> str:
    return "-" if n is None else f"{n / 2**20:.0f}"


def report(results: dict) -> str:
    lines = ["# Training benchmark", "", f"Command: `{results['command']}`", "",
             f"Data: {results['data']}", "",
             "| configuration | batch | MLX samples/s | PyTorch samples/s | speed ratio | MLX memory (MiB) | "
             "PyTorch memory (MiB) | memory ratio | MLX peak (mx, MiB) |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, pair in results["throughput"].items():
        m, t = pair["mlx"], pair["torch"]
        lines.append(f"| {name} | {m['batch_size']} | {m['samples_per_s']:.2f} | {t['samples_per_s']:.2f} | "
                     f"{pair['speed_ratio']:.2f}x | {_mib(m['rss_growth_bytes'])} | {_mib(t['rss_growth_bytes'])} | "
                     f"{pair['memory_ratio']:.2f}x | {_mib(m.get('mlx_peak_memory_bytes'))} |")  # fmt: skip
    lines += ["", "| full size, MLX only | batch | samples/s | RSS growth (MiB) | mx.get_peak_memory (MiB) |",
              "|---|---|---|---|---|"]  # fmt: skip
    for name, m in results["memory"].items():
        lines.append(f"| {name} | {m['batch_size']} | {m['samples_per_s']:.2f} | {_mib(m['rss_growth_bytes'])} | "
                     f"{_mib(m['mlx_peak_memory_bytes'])} |")  # fmt: skip
    for curve in results["curves"]:
        lines += ["", f"Learning curve `{curve['name']}/` ({curve['data']}), from `{curve['start']}`: "
                  f"{curve['steps']} steps of {curve['batch_size']}, lr {curve['lr']}, warmup {curve['warmup']} "
                  f"{curve['options']}; loss {curve['first_loss']:.3f} -> {curve['last_loss']:.3f}; "
                  f"{curve['samples_per_s_median']:.1f} samples/s (median step, data included)"
                  + (f"; {curve['seconds']:.0f} s in all" if curve["seconds"] else ""), "",
                  "| step | validation CER | exact match |", "|---|---|---|"]  # fmt: skip
        for v in curve["validation"]:
            lines.append(f"| {v['step']} | {100 * v['val_cer']:.2f}% | {100 * v['val_exact_match']:.2f}% |")
        lines += ["", "The final model on the held-out crops, by length (greedy):", "",
                  "| characters | crops | CER | exact match |", "|---|---|---|---|"]  # fmt: skip
        for n, f in curve.get("by_length", {}).items():
            lines.append(f"| {n} | {f['samples']} | {100 * f['cer']:.1f}% | {100 * f['exact_match']:.1f}% |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        p = argparse.ArgumentParser(prog="python -m benchmarks.training worker")
        p.add_argument("worker")
        p.add_argument("side", choices=["mlx", "torch"])
        p.add_argument("--model", required=True)
        p.add_argument("--data", required=True)
        p.add_argument("--batch-size", type=int, required=True)
        p.add_argument("--steps", type=int, required=True)
        p.add_argument("--checkpoint-encoder", action="store_true")
        p.add_argument("--out", required=True)
        args = p.parse_args()
        if args.side == "mlx":
            import mlx_mangaocr  # noqa: F401  (first: it loads OpenBLAS)
        Path(args.out).write_text(json.dumps(worker(args), indent=1))
        return
    p = argparse.ArgumentParser(prog="python -m benchmarks.training")
    p.add_argument("--out", required=True)
    p.add_argument("--train-count", type=int, default=20000)
    p.add_argument("--val-count", type=int, default=300)
    p.add_argument("--chars", default=CURVE_CHARS, help="the characters of the crops' texts")
    p.add_argument("--kanji", type=int, default=None,
                   help="instead of --chars: kana, a little punctuation and this many frequent kanji")  # fmt: skip
    p.add_argument("--stages", nargs="+", type=_stage, default=[_stage(x) for x in CURVE_STAGES], metavar="CHARS:STEPS",
                   help="the learning curve's stages, each from the last one's model: texts of 1 to CHARS "
                        f"characters for STEPS steps (default: {' '.join(CURVE_STAGES)})")  # fmt: skip
    p.add_argument("--plain", action=argparse.BooleanOptionalAction, default=True,
                   help="synth --plain crops: black text on white (--no-plain: synth's manga styles)")  # fmt: skip
    p.add_argument("--image-size", type=int, default=Small.image, help="the small configuration's input size")
    p.add_argument("--patch-size", type=int, default=Small.patch)
    p.add_argument("--hidden", type=int, default=Small.hidden, help="the small configuration's width")
    p.add_argument("--curve-options", default="--no-augment --dropout off",
                   help="more options for the learning curve's train command (default: %(default)s)")  # fmt: skip
    p.add_argument("--batch-size", type=int, default=8, help="the small configuration's batch (curve and speed)")
    p.add_argument("--lr", type=float, default=3e-4,
                   help="AdamW's peak rate in the curve (at 1e-3 the first stage stayed at chance)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--throughput-steps", type=int, default=20)
    p.add_argument("--full-batch", type=int, default=8)
    p.add_argument("--full-steps", type=int, default=3)
    p.add_argument("--big-batch", type=int, default=32, help="MLX's full-size peak memory at this batch")
    p.add_argument(
        "--full",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the full-size figures (--no-full: the small configuration only, as the test runs it)",
    )
    p.add_argument("--resume", action="store_true", help="reuse what an interrupted run wrote")
    args = p.parse_args()
    import mlx_mangaocr  # noqa: F401

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chars = charset(args.kanji) if args.kanji is not None else frozenset(args.chars)
    stages = args.stages
    for seed, count in ((1, args.train_count), (2, args.val_count)):
        for m in sorted({m for m, _ in stages}):
            make_data(out / f"{'train' if seed == 1 else 'val'}-set-{m}", count, seed, chars, m, args.plain)
    train = out / f"train-set-{stages[-1][0]}"  # the throughput pairs' batches: the last stage's texts
    small_config = Small(args.image_size, args.patch_size, args.hidden)
    small, full = out / "model-small", out / "model-full"
    make_model(small, small_config)
    if args.full:
        make_model(full, None)
    used = json.loads((train / "synth.json").read_text())["benchmark"]["chars"]
    source = f"the {args.kanji} most frequent kanji and kana" if args.kanji is not None else f"{used}"
    style = "synth --plain, black text on white" if args.plain else "synth's manga styles"

    def described(m: int) -> str:
        texts = [
            json.loads(line)["text"] for line in (out / f"train-set-{m}" / "labels.jsonl").read_text().splitlines()
        ]
        lengths = [len(t) for t in texts]
        longer = sum(n > m for n in lengths) / len(lengths)
        return (
            f"{args.train_count} training and {args.val_count} held-out crops of {source} ({style}), "
            f"lengths drawn from 1-{m} (mean {sum(lengths) / len(lengths):.1f}"
            + (f"; {100 * longer:.1f}% end past {m} at a word boundary, at most {max(lengths)})" if longer else ")")
        )

    data = f"{len(used)} characters; stages: " + "; ".join(f"{described(m)}" for m in sorted({m for m, _ in stages}))
    results = {"command": "python -m benchmarks.training " + " ".join(sys.argv[1:]), "data": data}
    results["throughput"] = {
        f"small ({small_config})": _pair(
            "small", small, train, args.batch_size, args.throughput_steps, out, args.resume
        ),
    }
    results["memory"] = {}
    if args.full:
        results["throughput"]["full size (manga-ocr-base's shape, 224x224)"] = _pair(
            "full", full, train, args.full_batch, args.full_steps, out, args.resume
        )
        big = args.big_batch
        results["memory"] = {
            f"batch {big}": _side("mlx", full, train, big, 1, out / "big-mlx.json", args.resume),
            f"batch {big}, --checkpoint-encoder": _side(
                "mlx", full, train, big, 1, out / "big-checkpoint-mlx.json", args.resume, checkpoint=True
            ),
        }
    results["curves"], start = [], small
    for m, steps in stages:
        name = f"curve-{len(results['curves']) + 1}-{m}-chars"
        curve = _curve(args, out, name, start, out / f"train-set-{m}", out / f"val-set-{m}", steps)
        curve["data"] = f"texts of 1-{m} characters"
        curve["by_length"] = _by_length(out / name, out / f"val-set-{m}")
        results["curves"].append(curve)
        start = out / name
    (out / "training.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    (out / "training.md").write_text(report(results))
    print(report(results))


if __name__ == "__main__":
    main()
