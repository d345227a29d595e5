"""MLX against PyTorch, side by side: ``python -m benchmarks --model PATH_OR_HUB_ID`` or ``--synthetic``.

Each side runs in its own fresh process (``benchmarks.measure``; cold starts in
``benchmarks.cold``) on the same images; this process compares their outputs and writes
``results.json`` (every raw figure), ``results.md`` (ratios) and ``results.png`` (chart).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from mlx_mangaocr.core.images import image_files

from . import environment, report

ROOT = Path(__file__).resolve().parents[1]  # the workers run as `python -m benchmarks.*` from here
VARIANTS = {  # name -> python -m convert options
    "float16": ["--dtype", "float16"],
    "bfloat16": ["--dtype", "bfloat16"],
    "q8": ["-q", "--q-bits", "8", "--q-group-size", "64"],
    "q4": ["-q", "--q-bits", "4", "--q-group-size", "64"],
}


def _images(spec: list[str] | None) -> list[str]:
    from testing.synthetic import EXAMPLES

    spec = spec or [str(EXAMPLES / "images")]
    files: list[str] = []
    for item in spec:
        path = Path(item)
        if path.is_dir():
            files += [str(p) for p in image_files(path)]
        elif path.is_file():
            files.append(str(path))
        else:
            raise SystemExit(f"error: no such image or folder: {path}")
    if not files:
        raise SystemExit(f"error: no images found in {spec}")
    return files


RESUMED: list[str] = []  # worker outputs reused by --resume, recorded in results.json


def _worker(args: list[str], target: Path, resume: bool, env: dict | None = None) -> None:
    """Run a worker that writes ``target``; with ``resume``, reuse a ``target`` an interrupted run left."""
    if resume and target.is_file() and target.stat().st_size:
        print(f"= reusing {target} (--resume)", file=sys.stderr, flush=True)
        RESUMED.append(target.name)
        return
    _run(args, env=env)


def _both_sides(args, out: Path, name: str, commands: dict[str, list[str]]) -> dict:
    """Each side's worker (``commands[side]``: its ``-m benchmarks.X ...`` arguments, without
    ``--out``) in a fresh process of its own, writing ``OUT/NAME-SIDE.json`` (``SIDE.json`` for an
    empty name); their outputs, by side. The PyTorch side gets ``--torch-device``."""
    outputs = {}
    for side, command in commands.items():
        target = out / (f"{name}-{side}.json" if name else f"{side}.json")
        extra = ["--torch-device", args.torch_device] if side == "torch" else []
        _worker([*command, "--out", str(target), *extra], target, args.resume)
        outputs[side] = json.loads(target.read_text(encoding="utf-8"))
    return outputs


def _run(args: list[str], capture: bool = False, env: dict | None = None) -> str:
    env = {**os.environ, "MLX_ENABLE_TF32": os.environ.get("MLX_ENABLE_TF32", "0"), **(env or {})}
    print("+", shlex.join(args), file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, *args], env=env, capture_output=capture, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(
            f"error: {shlex.join(args)} failed ({done.returncode}){': ' + done.stderr[-2000:] if capture else ''}"
        )
    return done.stdout if capture else ""


def _cold(side: str, model: str, image: str, args, runs: int) -> dict:
    extra = ["--dtype", args.dtype] if side == "mlx" and args.dtype else []
    extra += ["--torch-device", args.torch_device] if side == "torch" else []
    samples = [
        json.loads(_run(["-m", "benchmarks.cold", side, model, image, *extra], capture=True)) for _ in range(runs)
    ]
    out = {key: statistics.median(s[key] for s in samples) for key in samples[0]}
    out["runs"] = samples
    return out


def _generated_pages(folder: Path) -> list[str]:
    """The detector section's default pages: generated manga pages of several sizes and a webtoon strip."""
    from testing.pages import make_page, make_webtoon

    folder.mkdir(parents=True, exist_ok=True)
    pages = {
        "page-0.png": lambda: make_page(0).image,
        "page-1.png": lambda: make_page(1).image,
        "square-2.png": lambda: make_page(2, width=1200, height=1200).image,
        "wide-4.png": lambda: make_page(4, width=1600, height=900, rows=2, cols=3).image,
        "webtoon-1.png": lambda: make_webtoon(1).image,
    }
    for name, build in pages.items():
        if not (folder / name).is_file():
            build().save(folder / name)
    return [str(folder / name) for name in pages]


def _detector_source(args, out: Path) -> str:
    """The PyTorch side's detector: --detector, or with --synthetic a random full-size one in OUT."""
    detector = args.detector
    if not detector:
        from testing.synthetic_detector import FULL_DETECTOR, write_detector

        detector = out / "synthetic-detector"
        if not (detector / "model.safetensors").is_file():
            write_detector(detector, FULL_DETECTOR)
        detector = str(detector)
    return detector


def _detectors(args, out: Path) -> tuple[str, Path]:
    """The PyTorch side's detector (``_detector_source``) and the MLX side's, converted into OUT once."""
    detector = _detector_source(args, out)
    mlx_detector = out / "mlx-detector"
    if not (mlx_detector / "model.safetensors").is_file():
        _run(["-m", "convert", detector, "-o", str(mlx_detector), "--force"])
    return detector, mlx_detector


def _detector_section(args, out: Path) -> dict:
    """Both detectors on the same pages, each in its own process, and how far their detections agree."""
    detector, mlx_detector = _detectors(args, out)
    pages = _images(args.pages) if args.pages else _generated_pages(out / "pages")
    sides = _both_sides(args, out, "detector", {
        side: ["-m", "benchmarks.detect", side, "--model", model, "--pages", *pages]
        for side, model in (("mlx", str(mlx_detector)), ("torch", detector))
    })  # fmt: skip
    stages = {
        str(b): _both_sides(
            args,
            out,
            f"detector-stages-b{b}",
            {
                side: ["-m", "benchmarks.detector_stages", side, "--model", model, "--batch-size", str(b)]
                for side, model in (("mlx", str(mlx_detector)), ("torch", detector))
            },
        )  # fmt: skip
        for b in (1, 4)
    }
    return {
        "model": "synthetic full-size random weights (testing/synthetic_detector.py FULL_DETECTOR)"
        if not args.detector
        else args.detector,
        "pages": len(pages),
        **sides,
        "stages": stages,
        "agreement": report.detection_agreement(sides["mlx"], sides["torch"]),
    }


def _pages_section(args, out: Path, model: str, mlx_model: str) -> dict:
    """Whole pages to text on both sides (benchmarks/read_pages.py), each in its own process."""
    detector, mlx_detector = _detectors(args, out)
    pages = _images(args.pages) if args.pages else _generated_pages(out / "pages")[: args.page_reader_pages]
    common = ["--pages", *pages, "--decoding", args.page_decoding, "--batch-sizes", "1", "16"]
    if args.page_max_length:
        common += ["--max-length", str(args.page_max_length)]
    sides = _both_sides(args, out, "pages", {
        side: ["-m", "benchmarks.read_pages", side, "--ocr", ocr, "--detector", det, *common]
        for side, ocr, det in (("mlx", mlx_model, str(mlx_detector)), ("torch", model, detector))
    })  # fmt: skip
    same = sum(sides["mlx"]["pages"][p] == sides["torch"]["pages"][p] for p in sides["mlx"]["pages"])
    return {"pages": len(pages), "max_length": args.page_max_length, **sides, "identical_pages": same}


def _short_models(args, out: Path, model: str, mlx_model: str) -> tuple[str, str]:
    """The volume section's OCR: with --synthetic a full-size random checkpoint whose outputs end
    sooner (``testing.synthetic.SHORT``), converted for MLX; a real model as it is."""
    if not args.synthetic:
        return model, mlx_model
    from testing.synthetic import SHORT, write_checkpoint

    short = out / "synthetic-short-checkpoint"
    if not (short / "config.json").is_file():
        write_checkpoint(short, SHORT)
    mlx_short = out / "mlx-model-short"
    if not (mlx_short / "model.safetensors").is_file():
        _run(["-m", "convert", str(short), "-o", str(mlx_short), "--force"])
    return str(short), str(mlx_short)


def _volume_pages_section(args, out: Path, model: str, mlx_model: str) -> dict:
    """Realistic pages (benchmarks/volume_pages.py): about 12 crops a page, short outputs with a tail,
    the detector's time apart; MLX at its defaults against PyTorch one crop at a time."""
    detector, mlx_detector = _detectors(args, out)
    model, mlx_model = _short_models(args, out, model, mlx_model)
    folder = out / "volume-pages"
    folder.mkdir(exist_ok=True)
    pool = folder / "pool.json"
    length = ["--max-length", str(args.volume_max_length)]
    _worker(["-m", "benchmarks.volume_pages", "pool", "--ocr", mlx_model, *length, "--out", str(pool)], pool,
            args.resume)  # fmt: skip
    sides = _both_sides(args, out, "volume-pages", {
        name: ["-m", "benchmarks.volume_pages", side, "--ocr", ocr, "--detector", det, "--pool", str(pool),
               "--pages", str(args.volume_pages), "--folder", str(folder / name), *length, *extra]
        for name, side, ocr, det, extra in (("mlx", "mlx", mlx_model, str(mlx_detector), []),
                                            ("mlx-batch-1", "mlx", mlx_model, str(mlx_detector), ["--batch-size", "1"]),
                                            ("torch", "torch", model, detector, []))
    })  # fmt: skip
    same = sum(a == b for a, b in zip(sides["mlx"]["texts"], sides["torch"]["texts"], strict=True))
    return {"pages": args.volume_pages, "max_length": args.volume_max_length, "synthetic": args.synthetic,
            "pool": json.loads(pool.read_text(encoding="utf-8")), **sides, "identical_pages": same}  # fmt: skip


def _accuracy_section(args, out: Path, model: str, mlx_model: str) -> dict:
    """Accuracy (benchmarks/accuracy.py): the MLX eval pipeline and upstream manga-ocr on the same
    labelled crops, both sides' predictions scored by the same code."""
    from mlx_mangaocr.pipelines.evaluation.run import score_predictions

    model, mlx_model = _short_models(args, out, model, mlx_model)
    data = args.accuracy_data
    if data is None:
        data = out / "accuracy-set"
        if not (data / "labels.jsonl").is_file():
            _run(["-m", "mlx_mangaocr", "synth", str(data), "--count", str(args.accuracy), "--seed", "0"])
    limit = ["--limit", str(args.accuracy)]
    sides = _both_sides(args, out, "accuracy", {
        name: ["-m", "benchmarks.accuracy", side, "--model", side_model, "--data", str(data), *limit, *extra]
        for name, side, side_model, extra in (("mlx", "mlx", mlx_model, []),
                                              ("mlx-batch-1", "mlx", mlx_model, ["--batch-size", "1"]),
                                              ("torch", "torch", model, []))
    })  # fmt: skip
    for side in sides.values():
        side["figures"] = score_predictions(side["labels"], side["predictions"], side["vertical"])
    mlx, torch = sides["mlx"], sides["torch"]
    same = sum(a == b for a, b in zip(mlx["predictions"], torch["predictions"], strict=True))
    return {"data": str(data), "synthetic_model": args.synthetic, **sides, "identical_predictions": same,
            "identical_figures": mlx["figures"] == torch["figures"] == sides["mlx-batch-1"]["figures"]}  # fmt: skip


def _ragged_section(args, out: Path, model: str, mlx_model: str) -> dict:
    """Ragged output lengths (benchmarks/ragged.py): MLX one at a time, static and continuous
    batches of 16 against transformers on padded batches of 16, each side in its own process."""
    from .ragged import lengths_summary, workload

    folder = out / "ragged"
    folder.mkdir(exist_ok=True)
    pool = folder / "pool.json"
    _worker(["-m", "benchmarks.ragged", "pool", "--model", mlx_model, "--folder", str(folder / "pool"), "--out",
             str(pool)], pool, args.resume)  # fmt: skip
    max_length = json.loads((Path(mlx_model) / "config.json").read_text(encoding="utf-8")).get("max_length", 300)
    work = workload(pool, args.ragged_images, max_length)
    work = {mode: [str(Path(p).resolve()) for p in paths] for mode, paths in work.items()}
    work_file = folder / "workload.json"
    work_file.write_text(json.dumps(work, indent=1), encoding="utf-8")
    modes = ["greedy", "beam"] if args.ragged_decoding == "both" else [args.ragged_decoding]
    sides = _both_sides(args, out, "ragged", {
        side: ["-m", "benchmarks.ragged", side, "--model", side_model, "--workload", str(work_file),
               "--decoding", *modes]
        for side, side_model in (("mlx", mlx_model), ("torch", model))
    })  # fmt: skip
    section = {"images": args.ragged_images, "modes": {}, "mlx_facts": sides["mlx"]["facts"],
               "torch_facts": sides["torch"]["facts"]}  # fmt: skip
    for mode in modes:
        runs = {
            **sides["mlx"]["modes"][mode],
            **{f"transformers {k}": v for k, v in sides["torch"]["modes"][mode].items()},
        }
        reference = runs["one at a time"]
        section["modes"][mode] = {
            "lengths": lengths_summary(reference["new_tokens"]),
            "runs": {
                name: {k: v for k, v in run.items() if k not in ("texts", "new_tokens")} for name, run in runs.items()
            },
            "identical_texts": {
                name: sum(a == b for a, b in zip(run["texts"], reference["texts"], strict=True))
                for name, run in runs.items()
            },  # fmt: skip
        }
    return section


def build_parser(prog: str = "python -m benchmarks") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0], allow_abbrev=False)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="hub id or Hugging Face folder (the PyTorch side's model)")
    source.add_argument("--synthetic", action="store_true", help="build a full-size random-weight checkpoint (offline)")
    parser.add_argument("--mlx-model", help="MLX side's model folder (default: --model converted to OUT/mlx-model)")
    parser.add_argument("--images", nargs="+", help="image files or folders (default: the shared example images)")
    parser.add_argument("--torch-device", default="auto", choices=["auto", "mps", "cuda", "cpu"])
    parser.add_argument("--decoding", default="both", choices=["greedy", "beam", "both"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[1, 4, 16], help="throughput batch sizes")
    parser.add_argument("--throughput-images", type=int, default=16)
    parser.add_argument("--fixed-lengths", type=int, nargs="*", default=[16, 64])
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per image")
    parser.add_argument("--cold-runs", type=int, default=3)
    parser.add_argument(
        "--blas-comparison",
        action="store_true",
        help="Linux CPU: also time MLX without OpenBLAS (its bundled reference BLAS), on 2 images, greedy, 16 tokens",
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=[],
        help="also convert and time these MLX settings against float32 (size, speed, exact match), one decoding",
    )
    parser.add_argument("--variants-decoding", choices=["greedy", "beam"], default="beam")
    parser.add_argument(
        "--detector",
        help="detector hub id or folder for the detector section (with --synthetic: a random full-size one)",
    )
    parser.add_argument("--pages", nargs="+", help="page images for the detector section (default: generated pages)")
    parser.add_argument(
        "--page-reader", action="store_true", help="the page section: whole pages to text on both sides"
    )
    parser.add_argument("--page-reader-pages", type=int, default=2, help="generated pages in the page section")
    parser.add_argument("--page-decoding", choices=["beam", "greedy"], default="beam")
    parser.add_argument(
        "--page-max-length", type=int, help="cap on each crop's decoding in the page section (default: the model's)"
    )
    parser.add_argument(
        "--volume-pages", type=int, default=0, help="the realistic page section: generated pages with about 12 "
        "crops each and short outputs, the detector's time apart (0: skip it)"
    )  # fmt: skip
    parser.add_argument("--volume-max-length", type=int, default=48, help="cap on a crop's decoding there (the tail)")
    parser.add_argument(
        "--ragged", action="store_true", help="the ragged section: continuous against static batching and transformers"
    )
    parser.add_argument("--ragged-images", type=int, default=128, help="images in the ragged workload")
    parser.add_argument("--ragged-decoding", default="both", choices=["greedy", "beam", "both"])
    parser.add_argument(
        "--accuracy", type=int, default=0, metavar="N", help="the accuracy section: eval of the MLX model and of "
        "upstream manga-ocr on N labelled crops (0: skip it)"
    )  # fmt: skip
    parser.add_argument(
        "--accuracy-data", help="the accuracy section's labelled set, any DATA eval reads (default: N crops made by "
        "mlx-mangaocr synth --seed 0 into OUT/accuracy-set)"
    )  # fmt: skip
    parser.add_argument("--out", default="benchmarks/results/latest")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the worker outputs an earlier (e.g. interrupted) run wrote in OUT (listed in results.json); "
        "measure the rest",
    )
    return parser


def _models(args, out: Path) -> tuple[str, str]:
    """The PyTorch side's model (``--model``, or a synthetic full-size one in OUT) and the MLX
    side's (``--mlx-model``, or the former converted into OUT)."""
    if args.synthetic:
        from testing.synthetic import FULL, write_checkpoint

        model = out / "synthetic-checkpoint"
        if not (model / "config.json").is_file():
            write_checkpoint(model, FULL)
        model = str(model)
    else:
        model = args.model
    mlx_model = args.mlx_model
    if not mlx_model:
        mlx_model = str(out / f"mlx-model-{args.dtype}")
        if not (Path(mlx_model) / "model.safetensors").is_file():
            _run(["-m", "convert", model, "-o", mlx_model, "--dtype", args.dtype, "--force"])
    return model, mlx_model


def _ocr_section(args, out: Path, images: list[str], model: str, mlx_model: str) -> dict:
    """The OCR model on both sides (benchmarks/measure.py): speed, memory, ids and texts."""
    modes = ["greedy", "beam"] if args.decoding == "both" else [args.decoding]
    common = ["--images", *images, "--decoding", *modes, "--repeat", str(args.repeat)]
    common += ["--batch-sizes", *map(str, args.batch_size), "--throughput-images", str(args.throughput_images)]
    common += ["--fixed-lengths", *map(str, args.fixed_lengths)]
    mlx = _both_sides(args, out, "", {"mlx": ["-m", "benchmarks.measure", "mlx", "--model", mlx_model,
                                             "--compile-comparison", *common]})["mlx"]  # fmt: skip
    torch = _both_sides(args, out, "", {"torch": ["-m", "benchmarks.measure", "torch", "--model", model,
                                                 "--reference", str(out / "mlx.json"), *common]})["torch"]  # fmt: skip
    return {"mlx": mlx, "torch": torch, "parity": report.parity(mlx, torch)}


def _blas_section(args, out: Path, images: list[str], mlx_model: str) -> dict:
    """Linux CPU: MLX again with OpenBLAS opted out (its bundled reference BLAS)."""
    target = out / "mlx-reference-blas.json"
    _worker(["-m", "benchmarks.measure", "mlx", "--model", mlx_model, "--out", str(target), "--images", *images[:2],
             "--decoding", "greedy", "--max-length", "17", "--batch-sizes", "1", "--throughput-images", "1",
             "--fixed-lengths", "16"], target, args.resume, env={"MLX_MANGAOCR_NO_OPENBLAS": "1"})  # fmt: skip
    return json.loads(target.read_text(encoding="utf-8"))


def _kernels_section(args, out: Path, mlx_model: str) -> dict:
    """The encoder's GELU and attention, timed alone on both sides (benchmarks/kernels.py)."""
    return _both_sides(args, out, "kernels", {side: ["-m", "benchmarks.kernels", side, "--config", mlx_model]
                                              for side in ("mlx", "torch")})  # fmt: skip


def _variants_section(args, out: Path, images: list[str], model: str, mlx_model: str) -> dict:
    """Each --variants setting converted and timed against float32 (benchmarks/variants.py)."""
    variants = {}
    for name in ["float32", *args.variants]:
        folder = mlx_model if name == "float32" else str(out / f"mlx-model-{name}")
        if name != "float32" and not (Path(folder) / "model.safetensors").is_file():
            _run(["-m", "convert", model, "-o", folder, "--force", *VARIANTS[name]])
        target = out / f"variant-{name}.json"
        _worker(["-m", "benchmarks.variants", folder, "--images", *images, "--decoding", args.variants_decoding,
                 "--out", str(target)], target, args.resume)  # fmt: skip
        variants[name] = json.loads(target.read_text(encoding="utf-8"))
    return variants


def _cold_section(args, images: list[str], model: str, mlx_model: str) -> dict:
    """Cold load and first result, each side in fresh processes (benchmarks/cold.py)."""
    return {
        "mlx": _cold("mlx", mlx_model, images[0], args, args.cold_runs),
        "torch": _cold("torch", model, images[0], args, args.cold_runs),
    }


def _absolute(args) -> None:
    """Paths as given, made absolute here: the workers run in the checkout (``ROOT``), wherever this
    command was started (``mlx-mangaocr bench`` runs from anywhere)."""
    args.out = str(Path(args.out).absolute())
    for name in ("images", "pages"):
        if getattr(args, name):
            setattr(args, name, [str(Path(p).absolute()) for p in getattr(args, name)])
    for name in ("model", "mlx_model", "detector", "accuracy_data"):
        value = getattr(args, name)
        if value and Path(value).exists():
            setattr(args, name, str(Path(value).absolute()))


def main(argv: list[str] | None = None, prog: str = "python -m benchmarks") -> int:
    args = build_parser(prog).parse_args(argv)
    _absolute(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = _images(args.images)
    model, mlx_model = _models(args, out)
    ocr = _ocr_section(args, out, images, model, mlx_model)
    results = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python -m benchmarks " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "model": "synthetic full-size random weights (testing/synthetic.py FULL)" if args.synthetic else model,
        "images": f"{len(images)} ({Path(images[0]).parent})",
        "machine": environment.machine(),
        "footprint": environment.footprint(),
        **ocr,
        "kernels": _kernels_section(args, out, mlx_model),
    }
    if args.blas_comparison:
        results["mlx_reference_blas"] = _blas_section(args, out, images, mlx_model)
    if args.variants:
        results["variants"] = _variants_section(args, out, images, model, mlx_model)
    if args.synthetic or args.detector:
        results["detector"] = _detector_section(args, out)
    if args.page_reader:
        results["pages"] = _pages_section(args, out, model, mlx_model)
    if args.volume_pages:
        results["volume_pages"] = _volume_pages_section(args, out, model, mlx_model)
    if args.ragged:
        results["ragged"] = _ragged_section(args, out, model, mlx_model)
    if args.accuracy:
        results["accuracy"] = _accuracy_section(args, out, model, mlx_model)
    results["cold"] = _cold_section(args, images, model, mlx_model)
    if RESUMED:
        results["resumed_from_interrupted_run"] = RESUMED
    (out / "results.json").write_text(json.dumps(results, indent=1, ensure_ascii=False), encoding="utf-8")
    (out / "results.md").write_text(report.markdown(results), encoding="utf-8")
    report.chart(results, out / "results.png")
    print(out / "results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
