"""The benchmark's outputs: parity from both sides' ids, a Markdown table of ratios, a PNG chart."""

from __future__ import annotations

from pathlib import Path

from . import detector_stages


def parity(mlx: dict, torch: dict) -> dict:
    """Exact-match rates of token ids and final strings, per decoding mode, from real outputs."""
    out = {}
    for mode in mlx["modes"]:
        ours, theirs = mlx["modes"][mode]["per_image"], torch["modes"][mode]["per_image"]
        names = sorted(set(ours) & set(theirs))
        same_ids = [n for n in names if ours[n]["ids"] == theirs[n]["ids"]]
        same_text = [n for n in names if ours[n]["text"] == theirs[n]["text"]]
        out[mode] = {
            "images": len(names),
            "ids_match": len(same_ids),
            "text_match": len(same_text),
            "ids_match_rate": len(same_ids) / len(names) if names else None,
            "text_match_rate": len(same_text) / len(names) if names else None,
            "differences": torch.get("margins", {}).get(mode, {}),
        }
    return out


def detection_agreement(mlx: dict, torch: dict) -> dict:
    """Per page, MLX's detections matched to PyTorch's: same label, box corners within 1e-3 of the
    page's larger side, score within 1e-3."""
    pages = identical = matched = total_mlx = total_torch = 0
    worst_box = worst_score = 0.0
    for path, ours in mlx["detections"].items():
        theirs = list(torch["detections"][path])
        size = max(mlx["per_page"][path]["size"])
        pages += 1
        total_mlx, total_torch = total_mlx + len(ours), total_torch + len(theirs)
        found = 0
        for label, box, score in ours:
            for i, (t_label, t_box, t_score) in enumerate(theirs):
                box_diff = max(abs(a - b) for a, b in zip(box, t_box, strict=True)) / size
                if t_label == label and box_diff <= 1e-3 and abs(score - t_score) <= 1e-3:
                    worst_box, worst_score = max(worst_box, box_diff), max(worst_score, abs(score - t_score))
                    del theirs[i]
                    found += 1
                    break
        matched += found
        identical += found == len(ours) == len(mlx["detections"][path]) and not theirs
    return {"pages": pages, "identical_pages": identical, "matched": matched, "mlx_detections": total_mlx,
            "torch_detections": total_torch, "worst_box_diff_relative": worst_box, "worst_score_diff": worst_score}  # fmt: skip


def _detector_table(section: dict | None) -> list[str]:
    if not section:
        return []
    mlx, torch, agree = section["mlx"], section["torch"], section["agreement"]
    rows = [
        ("preprocess, median per page", mlx["median"]["preprocess_s"], torch["median"]["preprocess_s"], _ms),
        ("model, median per page", mlx["median"]["model_s"], torch["median"]["model_s"], _ms),
        ("post-process, median per page", mlx["median"]["postprocess_s"], torch["median"]["postprocess_s"], _ms),
        ("total, median per page", mlx["median"]["total_s"], torch["median"]["total_s"], _ms),
        ("load (imports + weights, fresh process)", mlx["load_s"], torch["load_s"], lambda v: f"{v:.2f} s"),
        (
            "peak memory (RSS growth after load)",
            mlx["memory"]["rss_growth_bytes"],
            torch["memory"]["rss_growth_bytes"],
            _mb,
        ),
    ]
    lines = [
        "## Detector",
        "",
        f"Model: {section['model']}; {section['pages']} pages; threshold {mlx['threshold']}. "
        f"MLX on {mlx['facts']['device']}, PyTorch on {torch['facts']['device']}. Both sides use the same "
        "runtime packages as the OCR (install footprint above).",
        "",
        "| metric | MLX | PyTorch | MLX / PyTorch |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {fmt(a)} | {fmt(b)} | {_ratio(a, b)} |" for name, a, b, fmt in rows]
    for batch, m in mlx["throughput"].items():
        t = torch["throughput"][batch]
        lines.append(f"| pages per second, batch {batch} | {m['pages_per_s']:.2f} | {t['pages_per_s']:.2f} | "
                     f"{_ratio(m['pages_per_s'], t['pages_per_s'])} |")  # fmt: skip
    lines += [
        "",
        f"Detection agreement: {agree['identical_pages']}/{agree['pages']} pages with identical detection sets; "
        f"{agree['matched']} of {agree['mlx_detections']} MLX detections ({agree['torch_detections']} PyTorch) "
        f"matched (same label, box within 1e-3 of the page's side, score within 1e-3); worst matched box "
        f"difference {agree['worst_box_diff_relative']:.1e} of the page's side, worst score difference "
        f"{agree['worst_score_diff']:.1e}.",
        "",
    ]
    return lines + _detector_stages_table(section.get("stages"))


def _runs(stages: dict) -> str:
    """How many measured runs each stage worker made (its ``--repeats``)."""
    counts = sorted({len(side["runs"]) for sides in stages.values() for side in sides.values()})
    return " or ".join(map(str, counts))


def _count(value) -> str:
    """A count, or a dash where a result predates it."""
    return "-" if value is None else f"{value:,.0f}"


def _detector_stages_table(stages: dict | None) -> list[str]:
    """Time and peak memory per stage of one forward (``benchmarks.detector_stages``), per batch size."""
    if not stages:
        return []
    lines = [
        "### Detector stages",
        "",
        "One forward on random pixels at the preprocessor's size, stage by stage (`benchmarks/detector_stages.py`): "
        f"median time of {_runs(stages)} runs after a warm-up; memory is the peak RSS during the stage above the RSS "
        "when the forward began (Linux `VmHWM`, reset per stage), the highest of the runs. The encoder is in three "
        "parts: its input projections (1x1 convolutions), AIFI (the transformer layer) and the fusion (CCFM's "
        "convolutions); query selection is the decoder's input projections, anchors, the encoder's heads and the "
        "top-k. Page faults are the process's minor faults during the stage, median of the runs: memory new to "
        "the process faults in page by page.",
        "",
        "| batch | stage | MLX time | PyTorch time | MLX / PyTorch | MLX memory | PyTorch memory | MLX page faults "
        "| PyTorch page faults |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for batch, sides in stages.items():
        mlx, torch = sides["mlx"], sides["torch"]
        memory = mlx.get("memory_measured", True) and torch.get("memory_measured", True)
        for stage in detector_stages.STAGES:
            a, b = mlx["median_seconds"][stage], torch["median_seconds"][stage]
            ma, mb = mlx["max_peak_above_start_bytes"][stage], torch["max_peak_above_start_bytes"][stage]
            fa, fb = (side.get("median_page_faults", {}).get(stage) for side in (mlx, torch))
            lines.append(f"| {batch} | {stage} | {_ms(a)} | {_ms(b)} | {_ratio(a, b)} | "
                         f"{_mb(ma) if memory else '-'} | {_mb(mb) if memory else '-'} | {_count(fa)} | "
                         f"{_count(fb)} |")  # fmt: skip
    return lines + [""]


def _volume_pages_table(section: dict | None) -> list[str]:
    """The realistic page section (``benchmarks/volume_pages.py``)."""
    if not section:
        return []
    mlx, torch = section["mlx"], section["torch"]
    lengths = sorted(mlx["text_lengths"]) or [0]
    n = section["pages"]

    def across(side):  # RSS after each page above the loaded models: first, highest, last
        after = [r - side["memory"]["rss_loaded_bytes"] for r in side["memory"]["rss_after_page_bytes"]]
        return f"{_mb(after[0])} / {_mb(max(after))} / {_mb(after[-1])}" if after else "-"

    rows = [
        ("pages per second", mlx["pages_per_s"], torch["pages_per_s"], lambda v: f"{v:.3f}"),
        ("detector, seconds per page", mlx["detector_s"] / n, torch["detector_s"] / n, lambda v: f"{v:.2f} s"),
        ("OCR and the rest, seconds per page", (mlx["seconds"] - mlx["detector_s"]) / n,
         (torch["seconds"] - torch["detector_s"]) / n, lambda v: f"{v:.2f} s"),
        ("peak memory (RSS growth after load)", mlx["memory"]["rss_growth_bytes"],
         torch["memory"]["rss_growth_bytes"], _mb),
    ]  # fmt: skip
    lines = [
        "## Realistic pages",
        "",
        f"{n} generated pages of five sizes, a 700x4200 strip among them, {mlx['crops']} text blocks in all "
        f"({mlx['crops'] / n:.1f} a page) from the pages' true text boxes; each side's own detector runs on "
        f"every page and its time counts (`benchmarks/volume_pages.py`). Output lengths (characters, a token "
        f"each): mean {sum(lengths) / len(lengths):.1f}, median {lengths[len(lengths) // 2]}, "
        f"max {lengths[-1]}; {sum(v >= section['max_length'] - 2 for v in lengths)} crops cut at max_length "
        f"{section['max_length']} (the tail). MLX is `read_pages` at its defaults (crop batch 16, page group 1); "
        "PyTorch is transformers' RT-DETR then manga-ocr's `generate` one crop at a time, as mokuro and "
        f"comic-translate run them. Pages identical (boxes and texts): {section['identical_pages']}/{n}.",
        "",
        "| metric | MLX | PyTorch | MLX / PyTorch |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {fmt(a)} | {fmt(b)} | {_ratio(a, b)} |" for name, a, b, fmt in rows]
    lines += [f"| RSS after each page over the loaded models: first / highest / last | {across(mlx)} | "
              f"{across(torch)} | |", ""]  # fmt: skip
    one = section.get("mlx-batch-1")
    if one:
        lines += [f"MLX one crop at a time on the same pages: {one['pages_per_s']:.3f} pages per second "
                  f"({_ratio(one['pages_per_s'], torch['pages_per_s'])} PyTorch's), detector "
                  f"{one['detector_s'] / n:.2f} s a page, peak memory {_mb(one['memory']['rss_growth_bytes'])} "
                  f"({_ratio(one['memory']['rss_growth_bytes'], torch['memory']['rss_growth_bytes'])}).", ""]  # fmt: skip
    return lines


def _accuracy_table(section: dict | None) -> list[str]:
    """The accuracy section (``benchmarks/accuracy.py``)."""
    if not section:
        return []
    mlx, torch = section["mlx"], section["torch"]

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}%"

    rows = [
        ("CER", mlx["figures"]["cer"], torch["figures"]["cer"], pct),
        ("mean CER", mlx["figures"]["mean_cer"], torch["figures"]["mean_cer"], pct),
        ("exact match", mlx["figures"]["exact_match"], torch["figures"]["exact_match"], pct),
        ("samples per second", mlx["samples_per_s"], torch["samples_per_s"], lambda v: f"{v:.2f}"),
        ("peak memory (RSS growth after load)", mlx["rss_growth_bytes"], torch["rss_growth_bytes"], _mb),
    ]
    model = (
        "a full-size random-weight checkpoint (`testing/synthetic.py` SHORT)"
        if section["synthetic_model"]
        else "the model"
    )
    lines = [
        "## Accuracy",
        "",
        f"`mlx-mangaocr eval` (continuous batching, {mlx['batch_size']} crops decoding together) and upstream "
        f"`manga_ocr.MangaOcr` (one crop at a time) on the same {mlx['samples']} labelled crops "
        f"(`{Path(section['data']).name}`), {model}, beam search as manga-ocr; both sides' predictions scored by "
        f"the same code (`benchmarks/accuracy.py`). Identical predictions: {section['identical_predictions']}/"
        f"{mlx['samples']}; identical figures: {'yes' if section['identical_figures'] else 'NO'}.",
        "",
        "| metric | MLX | PyTorch (manga-ocr) | MLX / PyTorch |",
        "|---|---|---|---|",
    ]
    lines += [f"| {name} | {fmt(a)} | {fmt(b)} | {_ratio(a, b) if 'per second' in name or 'memory' in name else ''} |"
              for name, a, b, fmt in rows]  # fmt: skip
    one = section.get("mlx-batch-1")
    if one:
        lines += ["", f"MLX one crop at a time (`--batch-size 1`) on the same crops: {one['samples_per_s']:.2f} samples "
                  f"per second ({_ratio(one['samples_per_s'], torch['samples_per_s'])} PyTorch's), peak memory "
                  f"{_mb(one['rss_growth_bytes'])} ({_ratio(one['rss_growth_bytes'], torch['rss_growth_bytes'])}); "
                  "the batch of 16 holds 16 crops' beams and caches at once."]  # fmt: skip
    return [*lines, ""]


def _pages_table(section: dict | None) -> list[str]:
    if not section:
        return []
    mlx, torch = section["mlx"], section["torch"]
    cap = f", each crop's decoding capped at {section['max_length']} tokens" if section["max_length"] else ""
    mode = "greedy" if mlx["decoding"].get("num_beams") == 1 else "the checkpoint's beam search (manga-ocr's)"
    lines = [
        "## Whole pages",
        "",
        f"{section['pages']} pages, {sum(mlx['blocks'])} text blocks in all; detector then OCR with the same "
        f"rules on both sides ({mode}{cap}). PyTorch at batch 1 is manga-ocr's `generate` on one crop at a "
        "time, as mokuro and comic-translate call it; at batch 16 the same pipeline on batches of 16 crops. "
        f"MLX is `read_pages(batch_size=...)`. Pages identical (boxes and texts): "
        f"{section['identical_pages']}/{section['pages']}.",
        "",
        "| metric | MLX | PyTorch | MLX / PyTorch |",
        "|---|---|---|---|",
    ]
    for batch in mlx["throughput"]:
        m, t = mlx["throughput"][batch]["pages_per_s"], torch["throughput"][batch]["pages_per_s"]
        lines.append(f"| pages per second, batch {batch} | {m:.3f} | {t:.3f} | {_ratio(m, t)} |")
    t1 = torch["throughput"]["1"]["pages_per_s"]
    m16 = mlx["throughput"]["16"]["pages_per_s"]
    lines.append(f"| MLX batch 16 against PyTorch one crop at a time | {m16:.3f} | {t1:.3f} | {_ratio(m16, t1)} |")
    a, b = mlx["memory"]["rss_growth_bytes"], torch["memory"]["rss_growth_bytes"]
    lines += [f"| peak memory (RSS growth after load) | {_mb(a)} | {_mb(b)} | {_ratio(a, b)} |", ""]
    return lines


def _ragged_table(section: dict | None) -> list[str]:
    if not section:
        return []
    lines = [
        "",
        "## Ragged output lengths: continuous batching",
        "",
        f"{section['images']} crops whose output lengths are ragged as a volume's (benchmarks/ragged.py): most "
        "short, a tail at 20 to 80 tokens, one at max_length, in a shuffled order of arrival. MLX one image at a "
        "time, a static batch of 16 and continuous batching at 16; transformers `generate` on padded batches of 16. "
        "Row-steps: decoder rows times steps run; needed: what the images need alone (their own steps times their "
        "beams); waste = run / needed.",
    ]
    for mode, data in section["modes"].items():
        n = data["lengths"]
        runs = data["runs"]
        lines += [
            "",
            f"**{mode}**: new tokens per image: mean {n['mean']:.1f}, median {n['median']:.0f}, p90 {n['p90']}, "
            f"max {n['max']}; {n['at_most_15']} images at 15 or fewer, {n['16_to_80']} at 16 to 80, "
            f"{n['over_80']} over 80.",
            "",
            "| run | images/s | continuous 16 / this | row-steps per image | waste (run / needed) | texts as one at a time |",
            "|---|---|---|---|---|---|",
        ]
        continuous = runs["continuous 16"]["images_per_s"]
        for name, run in runs.items():
            steps = run.get("row_steps")
            per_image = f"{steps / section['images']:.1f}" if steps is not None else ""
            waste = f"{steps / run['needed_row_steps']:.2f}x" if steps is not None else ""
            lines.append(f"| {name} | {run['images_per_s']:.2f} | {_ratio(continuous, run['images_per_s'])} | "
                         f"{per_image} | {waste} | {data['identical_texts'][name]}/{section['images']} |")  # fmt: skip
    return lines


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def _ms(seconds) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds is not None else "n/a"


def _mb(n) -> str:
    return f"{n / 2**20:.0f} MiB" if n is not None else "n/a"


def inference_memory(side: dict) -> int | None:
    """Memory a side needs to run, like for like: the device peak on a GPU (Metal, CUDA, MPS);
    on the CPU, the growth of the process RSS above what it held once the model was loaded."""
    device = side["facts"]["device"]
    if device in ("cuda", "mps") or "gpu" in device:
        return side["memory"].get("device_peak_bytes")
    return side["memory"].get("rss_growth_bytes")


def _kernels_table(results: dict) -> list[str]:
    kernels = results.get("kernels")
    if not kernels:
        return []
    m, t = kernels["mlx"]["per_image"], kernels["torch"]["per_image"]
    layers = kernels["mlx"]["shapes"]["layers"]
    encoder = {side: results[side]["modes"][next(iter(results[side]["modes"]))]["encoder_s"]["median"]
               for side in ("mlx", "torch")}  # fmt: skip
    gap = encoder["mlx"] - encoder["torch"]
    ours = m["gelu_library_s"] + m["attention_library_s"] - t["gelu_s"] - t["attention_s"]
    return [
        f"The encoder's GELU and attention alone, at its shapes, for one image ({layers} layers): MLX's own "
        "kernels, the library's CPU paths (rational erf; polynomial exp in the softmax) and PyTorch's.",
        "",
        "| kernel, per image | MLX kernel | library path | PyTorch | library / PyTorch |",
        "|---|---|---|---|---|",
        f"| GELU (erf) | {_ms(m['gelu_mlx_kernel_s'])} | {_ms(m['gelu_library_s'])} | {_ms(t['gelu_s'])} | "
        f"{_ratio(m['gelu_library_s'], t['gelu_s'])} |",
        f"| attention (softmax exp + 2 matmuls) | {_ms(m['attention_mlx_kernel_s'])} | "
        f"{_ms(m['attention_library_s'])} | {_ms(t['attention_s'])} | "
        f"{_ratio(m['attention_library_s'], t['attention_s'])} |",
        f"| attention's 2 matmuls alone | | {_ms(m['attention_matmuls_only_s'])} | | |",
        "",
        f"Encoder gap (MLX - PyTorch, medians above): {_ms(gap)}; of it, these kernels account for "
        f"{_ms(ours)} with the library's paths (they would account for "
        f"{_ms(ours + m['gelu_mlx_kernel_s'] - m['gelu_library_s'] + m['attention_mlx_kernel_s'] - m['attention_library_s'])}"
        " with MLX's own kernels).",
        "",
    ]


def _compiled_step_table(mlx: dict) -> list[str]:
    rows = [(mode, m["compiled_step"]) for mode, m in mlx["modes"].items() if "compiled_step" in m]
    if not rows:
        return []
    lines = [
        f"MLX decode step compiled with `mx.compile` against uncompiled, image by image in alternation "
        f"(natural lengths); the library's default is {rows[0][1]['default']}.",
        "",
        "| decoding | uncompiled, per step | compiled, per step | compiled / uncompiled | token ids identical |",
        "|---|---|---|---|---|",
    ]
    for mode, c in rows:
        eager, compiled = c["eager_decode_per_step_s"], c["compiled_decode_per_step_s"]
        lines.append(
            f"| {mode} | {_ms(eager)} | {_ms(compiled)} | {_ratio(compiled, eager)} | "
            f"{c['ids_identical']}/{c['images']} |"
        )
    return [*lines, ""]


def _variants_table(variants: dict | None) -> list[str]:
    if not variants:
        return []
    base = variants["float32"]
    lines = [
        f"MLX settings against float32 ({base['mode']} decoding, {len(base['per_image'])} images, each image "
        "once): size on disk, speed, and how many final texts (and token ids) are identical to float32's.",
        "",
        "| setting | size on disk | encoder, median | decode per step | end-to-end, median | "
        "texts identical to float32 | ids identical |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in variants.items():
        same_text = sum(v["per_image"][k]["text"] == base["per_image"][k]["text"] for k in base["per_image"])
        same_ids = sum(v["per_image"][k]["ids"] == base["per_image"][k]["ids"] for k in base["per_image"])
        n = len(base["per_image"])
        lines.append(
            f"| {name} | {_mb(v['size_on_disk_bytes'])} | {_ms(v['encoder_s']['median'])} | "
            f"{_ms(v['decode_per_step_s'])} | {_ms(v['end_to_end_s']['median'])} | "
            f"{same_text}/{n} ({same_text / n:.0%}) | {same_ids}/{n} |"
        )
    return [*lines, ""]


def markdown(results: dict) -> str:
    mlx, torch = results["mlx"], results["torch"]
    lines = [
        "# mlx-mangaocr vs PyTorch (transformers)",
        "",
        f"- date: {results['date']}",
        f"- command: `{results['command']}`",
        f"- machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, "
        f"{_mb(results['machine']['memory_bytes'])}, {results['machine']['os']}",
        f"- MLX {mlx['facts']['mlx_version']} on {mlx['facts']['device']} ({mlx['facts']['dtype']}), BLAS: {mlx['facts']['blas']}",
        f"- PyTorch {torch['facts']['torch_version']} on {torch['facts']['device']}, BLAS: {torch['facts']['blas']}, "
        f"{torch['facts']['threads']} threads",
        f"- model: {results['model']}; images: {results['images']}",
        *(
            [
                f"- run with `--resume`: reused {', '.join(results['resumed_from_interrupted_run'])}, written "
                "into this folder by an earlier run of the harness (see the README for which); everything else, "
                "cold loads included, measured in this run"
            ]
            if results.get("resumed_from_interrupted_run")
            else []
        ),  # fmt: skip
        "",
        "Ratios are MLX / PyTorch: below 1 means MLX takes less time or memory; for throughput, above 1 "
        "means MLX does more images per second.",
        "",
        "| decoding | metric | MLX | PyTorch | MLX / PyTorch |",
        "|---|---|---|---|---|",
    ]
    for mode, m in mlx["modes"].items():
        t = torch["modes"][mode]
        rows = [
            ("end-to-end latency per image, median", m["end_to_end_s"]["median"], t["end_to_end_s"]["median"]),
            ("end-to-end latency per image, p90", m["end_to_end_s"]["p90"], t["end_to_end_s"]["p90"]),
            ("end-to-end per generated token", m["end_to_end_per_token_s"], t["end_to_end_per_token_s"]),
            ("decode time per step (natural lengths)", m["decode_per_step_s"], t["decode_per_step_s"]),
        ]
        rows += [
            (
                f"decode time per step, {n} new tokens",
                m["fixed_length"][n]["decode_per_step_s"],
                t["fixed_length"][n]["decode_per_step_s"],
            )
            for n in m["fixed_length"]
        ]
        rows += [
            ("encoder, median", m["encoder_s"]["median"], t["encoder_s"]["median"]),
            ("preprocessing, median", m["preprocess_s"]["median"], t["preprocess_s"]["median"]),
        ]
        for name, a, b in rows:
            lines.append(f"| {mode} | {name} | {_ms(a)} | {_ms(b)} | {_ratio(a, b)} |")
        for bs in m["throughput"]:
            a, b = m["throughput"][bs]["images_per_s"], t["throughput"][bs]["images_per_s"]
            lines.append(f"| {mode} | throughput at batch {bs} | {a:.2f} img/s | {b:.2f} img/s | {_ratio(a, b)} |")
        p = results["parity"][mode]
        lines.append(
            f"| {mode} | token ids identical | {p['ids_match']}/{p['images']} images | | {p['ids_match_rate']:.0%} |"
        )
        lines.append(
            f"| {mode} | final strings identical | {p['text_match']}/{p['images']} images | | {p['text_match_rate']:.0%} |"
        )
        lines.append(
            f"| {mode} | mean new tokens per image | {m['new_tokens_mean']:.1f} | {t['new_tokens_mean']:.1f} | |"
        )
    cm, ct = results["cold"]["mlx"], results["cold"]["torch"]
    mm, tm = mlx["memory"], torch["memory"]
    mlx_peak, t_peak = inference_memory(mlx), inference_memory(torch)
    foot = results["footprint"]
    lines += [
        f"| all | cold load (import + weights, fresh process) | {cm['import_s'] + cm['load_s']:.2f} s | "
        f"{ct['import_s'] + ct['load_s']:.2f} s | {_ratio(cm['import_s'] + cm['load_s'], ct['import_s'] + ct['load_s'])} |",
        f"| all | first result after load (warm-up) | {cm['first_result_s']:.2f} s | {ct['first_result_s']:.2f} s | "
        f"{_ratio(cm['first_result_s'], ct['first_result_s'])} |",
        f"| all | peak inference memory (GPU: device peak; CPU: process RSS growth after load) | "
        f"{_mb(mlx_peak)} | {_mb(t_peak)} | {_ratio(mlx_peak, t_peak)} |",
        f"| all | MLX allocator peak (weights included) | {_mb(mm.get('device_peak_bytes'))} | | |",
        f"| all | process peak RSS | {_mb(mm['process_peak_rss_bytes'])} | {_mb(tm['process_peak_rss_bytes'])} | "
        f"{_ratio(mm['process_peak_rss_bytes'], tm['process_peak_rss_bytes'])} |",
        f"| all | install footprint (runtime dependencies) | {_mb(foot['mlx']['bytes'])} | {_mb(foot['torch']['bytes'])} | "
        f"{_ratio(foot['mlx']['bytes'], foot['torch']['bytes'])} |",
        "",
    ]
    reference = results.get("mlx_reference_blas")
    if reference:
        ref, opt = reference["modes"]["greedy"], mlx["modes"].get("greedy", {})
        step_ref = ref["fixed_length"]["16"]["decode_per_step_s"]
        step_opt = opt.get("fixed_length", {}).get("16", {}).get("decode_per_step_s")
        enc_ref, enc_opt = ref["encoder_s"]["median"], opt.get("encoder_s", {}).get("median")
        lines += [
            f"MLX with OpenBLAS opted out (MLX_MANGAOCR_NO_OPENBLAS=1: {reference['facts']['blas']}) against "
            f"OpenBLAS ({mlx['facts']['blas']}): greedy, 16 new tokens; reference BLAS on the first "
            f"{len(ref['per_image'])} images, OpenBLAS on all {len(opt.get('per_image', {}))}.",
            "",
            "| metric | reference BLAS | OpenBLAS | OpenBLAS / reference |",
            "|---|---|---|---|",
            f"| encoder, median | {_ms(enc_ref)} | {_ms(enc_opt)} | {_ratio(enc_opt, enc_ref)} |",
            f"| decode time per step, 16 new tokens | {_ms(step_ref)} | {_ms(step_opt)} | {_ratio(step_opt, step_ref)} |",
            "",
        ]
    lines += _kernels_table(results) + _compiled_step_table(mlx) + _variants_table(results.get("variants"))
    lines += _detector_table(results.get("detector")) + _pages_table(results.get("pages"))
    lines += _volume_pages_table(results.get("volume_pages"))
    lines += _accuracy_table(results.get("accuracy"))
    lines += _ragged_table(results.get("ragged"))
    diffs = {mode: p["differences"] for mode, p in results["parity"].items() if p["differences"]}
    if diffs:
        lines += ["Where the ids differ (first differing position, PyTorch's logit margin there):", ""]
        for mode, per_image in diffs.items():
            for name, d in per_image.items():
                margin = f"{d['logit_margin']:.3g}" if "logit_margin" in d else "n/a"
                lines.append(f"- {mode} {name}: position {d['first_differing_step']}, margin {margin}")
        lines.append("")
    return "\n".join(lines)


def chart(results: dict, path: Path) -> None:
    """Latency per stage and memory, both sides, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = list(results["mlx"]["modes"])
    stages = ["preprocess", "encoder", "decode step", "end-to-end"]
    fig, axes = plt.subplots(1, len(modes) + 1, figsize=(5 * (len(modes) + 1), 4))
    for ax, mode in zip(axes, modes, strict=False):
        for offset, side in ((-0.2, "mlx"), (0.2, "torch")):
            m = results[side]["modes"][mode]
            values = [
                m["preprocess_s"]["median"],
                m["encoder_s"]["median"],
                m["decode_per_step_s"],
                m["end_to_end_s"]["median"],
            ]
            ax.bar([i + offset for i in range(len(stages))], [v * 1e3 for v in values], width=0.4, label=side)
        ax.set_xticks(range(len(stages)), stages)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log scale)")
        ax.set_title(f"latency, {mode} decoding")
        ax.legend()
    ax = axes[-1]
    mlx_mem, torch_mem = results["mlx"]["memory"], results["torch"]["memory"]
    labels = ["inference peak", "process peak RSS"]
    for offset, side, values in (
        (-0.2, "mlx", [inference_memory(results["mlx"]), mlx_mem["process_peak_rss_bytes"]]),
        (0.2, "torch", [inference_memory(results["torch"]), torch_mem["process_peak_rss_bytes"]]),
    ):
        ax.bar([i + offset for i in range(2)], [(v or 0) / 2**20 for v in values], width=0.4, label=side)
    ax.set_xticks(range(2), labels)
    ax.set_ylabel("MiB")
    ax.set_title("memory")
    ax.legend()
    fig.suptitle(f"mlx-mangaocr vs PyTorch — {results['machine']['cpu']}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    """``python -m benchmarks.report DIR``: write DIR/results.md and DIR/results.png again from
    DIR/results.json (the figures are not measured again)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m benchmarks.report")
    parser.add_argument("folder")
    folder = Path(parser.parse_args(argv).folder)
    results = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    (folder / "results.md").write_text(markdown(results), encoding="utf-8")
    chart(results, folder / "results.png")


if __name__ == "__main__":
    main()
