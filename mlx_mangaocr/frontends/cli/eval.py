"""``mlx-mangaocr eval DATA...``: character error rate and exact match on labelled crops.

mlx-mangaocr eval labels.jsonl                          # JSONL, CSV, .mokuro, Manga109-s, synth output
mlx-mangaocr eval Manga109s/ --books test-books.txt     # a split by book
mlx-mangaocr eval data.csv --model A --model B --json   # models side by side, on the same samples
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ...core.atomic_files import write_atomic
from ...core.names import display_name
from ...pipelines.datasets import FORMS, DataError, open_datasets, read_books
from ...pipelines.evaluation import NORMALIZERS, EvalCallback, evaluate
from . import common
from .common import Progress, error


def build_parser():
    p = common.parser(
        "eval",
        "Character error rate (CER) and exact match of OCR models on labelled crops. DATA is " + FORMS + ".",
    )
    p.add_argument("data", nargs="+", metavar="DATA", help="labelled crops: .jsonl, .csv, .mokuro, or a folder")
    p.add_argument(
        "--model",
        action="append",
        help="a model to evaluate (converted MLX folder, Hugging Face folder or hub id; default: "
        "kha-white/manga-ocr-base); give it several times to compare models on the same samples",
    )
    common.add_decoding(p, "crops decoded together")
    p.add_argument(
        "--normalize",
        choices=NORMALIZERS,
        default="manga-ocr",
        help="manga-ocr: manga-ocr's post-processing applied to the reference, as predictions get it (default); "
        "nfkc: Unicode NFKC on both sides; none: the texts as they are",
    )
    p.add_argument("--books", metavar="FILE", help="Manga109-s: read only these books (one title a line)")
    p.add_argument("--limit", type=common.positive_int, metavar="N", help="the first N samples only")
    p.add_argument("--skip-bad", action="store_true", help="leave out bad samples (each is named) instead of stopping")
    p.add_argument("--records", metavar="FILE", help="write one JSON line per sample and model (written at the end)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    common.add_progress(p)
    return p


class _Callback(EvalCallback):
    def __init__(self, total: int, show: bool):
        self.progress = Progress(total, show, unit="crops")

    def on_model(self, name: str, index: int, count: int) -> None:
        if count > 1 and self.progress.enabled:
            print(f"model {index + 1} of {count}: {name}", file=sys.stderr, flush=True)

    def on_skip(self, message: str) -> None:
        if self.progress.enabled and 0 < self.progress.done < self.progress.total:
            sys.stderr.write("\n")
        print(f"skipped: {message}", file=sys.stderr, flush=True)

    def on_advance(self, count: int) -> None:
        self.progress.advance(count)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not common.one_process("eval"):
        return 2
    return common.with_pixel_limit(args, lambda: _run(args))


def _run(args) -> int:
    problem = common.output_problem(args.records, args.data, "--records")
    if problem:
        error(problem)
        return 2
    try:
        books = read_books(args.books) if args.books else None
        datasets = open_datasets(args.data, books, args.skip_bad)
    except DataError as e:
        error(_with_hint(e, args.skip_bad))
        return 2
    problem = _records_problem(args.records, datasets, args.books)
    if problem:
        for dataset in datasets:
            dataset.close()
        error(problem)
        return 2
    try:
        for dataset in datasets:
            for message in dataset.skipped:
                print(f"skipped: {message}", file=sys.stderr)
        samples = [s for d in datasets for s in d.samples][: args.limit]
        if not samples:
            error("no samples to evaluate in " + ", ".join(display_name(p) for p in args.data))
            return 2
        sources = [d.describe() for d in datasets]
        names = args.model or [None]
        models = []
        for name in names:
            args.model = name
            processor = common.load_processor(args)
            if processor is None:
                return 2
            models.append((common.model_source(name), processor))
        show = args.progress if args.progress is not None else sys.stderr.isatty()
        callback = _Callback(len(samples) * len(models), show)
        try:
            result = evaluate(models, samples, args.normalize, args.batch_size, common.decoding_of(args),
                              args.skip_bad, callback)  # fmt: skip
        except DataError as e:
            error(_with_hint(e, args.skip_bad))
            return 2
        except KeyboardInterrupt:
            print("\ninterrupted: nothing written", file=sys.stderr)
            return 130
    finally:
        for dataset in datasets:
            dataset.close()
    if not result.summaries[0]["samples"]:
        error(f"every sample was left out ({len(result.skipped)}): nothing to score")
        return 2
    skipped_before = sum(len(d.skipped) for d in datasets)
    for summary in result.summaries:
        summary["skipped"] += skipped_before
        summary["decoding"] = args.decoding
        summary["sources"] = sources
    if args.json:
        out = result.summaries[0] if len(result.summaries) == 1 else {"models": result.summaries}
        print(json.dumps(out, ensure_ascii=False, indent=1), flush=True)
    else:
        print(table(result.summaries), flush=True)
    if args.records:
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in result.records)
        try:
            write_atomic(Path(args.records), lines)
        except OSError as e:
            error(f"cannot write --records {display_name(args.records)}: {e.strerror or e}")
            return 1
    return 1 if result.summaries[0]["skipped"] else 0  # 1: some samples failed, each named on stderr


def _with_hint(e: DataError, skip_bad: bool) -> str:
    return f"{e} (--skip-bad leaves bad samples out)" if e.skippable and not skip_bad else str(e)


def _records_problem(records: str | None, datasets, books: str | None) -> str | None:
    """Why ``--records`` may not be written: it is one of the files read (listed images, label
    files, annotations, pages, ``--books``). ``output_problem`` has refused a folder already."""
    if records is None:
        return None
    path = Path(records)
    try:
        if not path.exists():
            return None
        mine = os.stat(path)
    except OSError as e:
        return f"--records {display_name(records)}: {e.strerror or e}"
    for file in [*([Path(books)] if books else []), *(f for d in datasets for f in d.inputs)]:
        try:
            other = os.stat(file)
        except OSError:
            continue
        if (other.st_dev, other.st_ino) == (mine.st_dev, mine.st_ino):
            shown = display_name(file)
            return f"--records {display_name(records)} is {shown}, which this run reads; choose another file"
    return None


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _split(figures: dict) -> str:
    return f"{_percent(figures['cer'])} ({figures['samples']})"


def _confusion(c: dict) -> str:
    return f"{c['reference'] or '∅'}→{c['prediction'] or '∅'} {c['count']}"


def table(summaries: list[dict]) -> str:
    """The summaries as a text table: one column per model, then the normalization and confusions."""
    rows: list[tuple[str, list[str]]] = [
        ("samples", [str(s["samples"]) for s in summaries]),
        ("CER", [_percent(s["cer"]) for s in summaries]),
        ("mean CER", [_percent(s["mean_cer"]) for s in summaries]),
        ("exact match", [_percent(s["exact_match"]) for s in summaries]),
    ]
    for key in ("vertical", "horizontal"):
        rows.append((f"CER {key} (n)", [_split(s["by_orientation"][key]) for s in summaries]))
    for key in summaries[0]["by_length"]:
        rows.append((f"CER length {key} (n)", [_split(s["by_length"][key]) for s in summaries]))
    rows.append(("samples/s", [str(s["samples_per_second"]) for s in summaries]))
    header = ["", *(s["model"] for s in summaries)]
    widths = [max(len(r[0]) for r in rows)]
    widths += [max(len(header[i + 1]), *(len(r[1][i]) for r in rows)) for i in range(len(summaries))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for label, cells in rows:
        lines.append("  ".join([label.ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells, widths[1:], strict=True))]))
    first = summaries[0]
    lines.append(f"normalization: {first['normalize']}; decoding: {first['decoding']}; skipped: {first['skipped']}")
    for s in summaries:
        lines.append(f"confusions ({s['model']}): {', '.join(map(_confusion, s['confusions'])) or 'none'}")
    return "\n".join(lines)
