"""The benchmark harness, end to end on a tiny checkpoint (no timing thresholds: only that every
figure is there and that parity comes from the real outputs)."""

import json
import shutil
import sys

import mlx.core as mx
import numpy as np
import pytest

from benchmarks.__main__ import main
from benchmarks.detector_stages import STAGES
from testing.synthetic import IMAGES

SMALL = ["--batch-size", "1", "2", "--throughput-images", "2", "--fixed-lengths", "4", "--cold-runs", "1"]

MODE_FIELDS = {
    "per_image", "preprocess_s", "encoder_s", "end_to_end_s", "decode_per_step_s", "end_to_end_per_token_s",
    "new_tokens_mean", "fixed_length", "throughput",
}  # fmt: skip


@pytest.fixture(scope="module")
def bench(tiny, small_detector, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    images = [str(p) for p in IMAGES[:3]]
    args = ["--model", str(tiny.folder), "--images", *images, "--out", str(out), "--blas-comparison", *SMALL]
    args += ["--variants", "bfloat16", "q8", "--detector", str(small_detector.folder)]
    args += ["--page-reader", "--page-reader-pages", "1", "--page-decoding", "greedy", "--page-max-length", "10"]
    args += ["--ragged", "--ragged-images", "12", "--ragged-decoding", "greedy", "--volume-pages", "2"]
    args += ["--accuracy", "6"]
    assert main(args) == 0
    return out


def test_results_json_has_every_figure(bench):
    results = json.loads((bench / "results.json").read_text())
    assert {"date", "command", "machine", "footprint", "cold", "mlx", "torch", "parity"} <= results.keys()
    assert {"cpu", "cores", "memory_bytes", "os", "python"} <= results["machine"].keys()
    for side in ("mlx", "torch"):
        data = results[side]
        assert {"facts", "modes", "memory"} <= data.keys()
        assert data["facts"]["blas"] and data["facts"]["device"]
        assert {"process_peak_rss_bytes", "rss_after_load_bytes"} <= data["memory"].keys()
        assert set(data["modes"]) == {"greedy", "beam"}
        for mode in data["modes"].values():
            assert MODE_FIELDS <= mode.keys()
            assert {"median", "p90"} <= mode["end_to_end_s"].keys()
            assert set(mode["throughput"]) == {"1", "2"} and set(mode["fixed_length"]) == {"4"}
            assert len(mode["per_image"]) == 3
        assert {"import_s", "load_s", "first_result_s"} <= results["cold"][side].keys()
        assert results["footprint"][side]["bytes"] > 0
    if sys.platform.startswith("linux") and results["mlx"]["facts"]["device"].startswith("Device(cpu"):
        assert "openblas" in results["mlx"]["facts"]["blas"]  # setup_mlx.sh installs it; the library loads it
    assert results["mlx"]["memory"]["device_peak_bytes"] > 0
    reference = results["mlx_reference_blas"]  # --blas-comparison: MLX again, OpenBLAS opted out
    assert "reference" in reference["facts"]["blas"] and set(reference["modes"]) == {"greedy"}
    assert all(len(image["ids"]) <= 17 for image in reference["modes"]["greedy"]["per_image"].values())
    for mode in ("greedy", "beam"):
        compiled = results["mlx"]["modes"][mode]["compiled_step"]  # compiled decode step against uncompiled
        assert compiled["eager_decode_per_step_s"] > 0 and compiled["compiled_decode_per_step_s"] > 0
        assert compiled["ids_identical"] == compiled["images"] == 3
    kernels = results["kernels"]  # the encoder's GELU and attention alone, both sides
    assert {"gelu_mlx_kernel_s", "gelu_library_s", "attention_library_s"} <= kernels["mlx"]["per_image"].keys()
    assert {"gelu_s", "attention_s"} <= kernels["torch"]["per_image"].keys()
    variants = results["variants"]  # --variants: each setting converted, timed and compared with float32
    assert list(variants) == ["float32", "bfloat16", "q8"]
    assert variants["bfloat16"]["dtype"] == "mlx.core.bfloat16"
    assert variants["q8"]["quantization"] == {"group_size": 64, "bits": 8}
    assert variants["bfloat16"]["size_on_disk_bytes"] < variants["float32"]["size_on_disk_bytes"]
    for v in variants.values():
        assert v["mode"] == "beam" and len(v["per_image"]) == 3 and v["decode_per_step_s"] > 0
    assert variants["float32"]["per_image"] == {  # the worker's float32 run gives the main run's outputs
        name: {"ids": r["ids"], "text": r["text"]} for name, r in results["mlx"]["modes"]["beam"]["per_image"].items()
    }
    for mode in ("greedy", "beam"):
        assert results["parity"][mode]["ids_match_rate"] == 1.0
        assert results["parity"][mode]["text_match_rate"] == 1.0


def test_detector_section(bench):
    """Both detectors on the generated pages in the same run: per-page times, batches 1 and 4, load,
    memory, and detections that agree (the small checkpoint has no near-ties)."""
    section = json.loads((bench / "results.json").read_text())["detector"]
    assert section["pages"] == 5
    for side in ("mlx", "torch"):
        data = section[side]
        assert len(data["per_page"]) == 5 and data["load_s"] > 0
        for page in data["per_page"].values():
            assert page["model_s"] > 0 and page["preprocess_s"] > 0 and page["postprocess_s"] >= 0
        assert set(data["throughput"]) == {"1", "4"} and data["memory"]["rss_growth_bytes"] is not None
        assert sum(len(d) for d in data["detections"].values()) > 0
    if sys.platform.startswith("linux") and section["mlx"]["facts"]["device"].startswith("Device(cpu"):
        assert "openblas" in section["mlx"]["facts"]["blas"]  # the worker imports the library before mlx
    agreement = section["agreement"]
    assert agreement["identical_pages"] == agreement["pages"] == 5
    # stage by stage, at batches 1 and 4: every stage timed on both sides, memory per stage on Linux
    assert set(section["stages"]) == {"1", "4"}
    for batch, stages in section["stages"].items():
        for side in ("mlx", "torch"):
            data = stages[side]
            assert data["batch_size"] == int(batch) and data["input"] == [320, 320]  # the small detector's size
            assert all(data["median_seconds"][s] > 0 for s in STAGES)
            assert set(data["median_page_faults"]) == set(STAGES)
            if sys.platform.startswith("linux"):
                assert data["memory_measured"] and data["max_peak_above_start_bytes"]["backbone"] > 0
                # the warm-up forward touches memory new to the process: its stages take page faults
                assert sum(data["warm_up"]["page_faults"].values()) > 0
    assert "### Detector stages" in (bench / "results.md").read_text(encoding="utf-8")
    assert "| MLX page faults | PyTorch page faults |" in (bench / "results.md").read_text(encoding="utf-8")
    assert agreement["matched"] == agreement["mlx_detections"] == agreement["torch_detections"]


def test_page_section(bench):
    """Both page pipelines ran at batch 1 and 16 on the same page and read it the same."""
    pages = json.loads((bench / "results.json").read_text(encoding="utf-8"))["pages"]
    assert pages["pages"] == 1 and pages["identical_pages"] == 1 and pages["max_length"] == 10
    for side in ("mlx", "torch"):
        assert set(pages[side]["throughput"]) == {"1", "16"}
        assert all(v["pages_per_s"] > 0 for v in pages[side]["throughput"].values())
        assert pages[side]["blocks"][0] > 0 and pages[side]["decoding"] == {"num_beams": 1, "max_length": 10}
        assert pages[side]["memory"]["rss_peak_bytes"] > 0
    assert "## Whole pages" in (bench / "results.md").read_text(encoding="utf-8")


def test_volume_pages_section(bench):
    """Realistic pages: both sides read the same generated pages from their true boxes, the
    detector timed apart, RSS recorded after each page; the same texts on both sides."""
    section = json.loads((bench / "results.json").read_text(encoding="utf-8"))["volume_pages"]
    assert section["pages"] == 2 and section["identical_pages"] == 2
    assert section["pool"]["ending"] or section["pool"]["looping"]
    for side in ("mlx", "torch"):
        data = section[side]
        assert data["crops"] >= 2 * 9 and 0 < data["detector_s"] < data["seconds"]  # 3x3 panels, a region or two
        assert len(data["memory"]["rss_after_page_bytes"]) == 2 and data["memory"]["rss_peak_bytes"] > 0
    assert section["mlx"]["batch_size"] == 16 and section["torch"]["batch_size"] == 1
    assert section["mlx-batch-1"]["batch_size"] == 1 and section["mlx-batch-1"]["texts"] == section["mlx"]["texts"]
    assert section["mlx"]["boxes"] == section["torch"]["boxes"]
    assert "## Realistic pages" in (bench / "results.md").read_text(encoding="utf-8")


def test_accuracy_section(bench):
    """eval's pipeline and upstream manga-ocr on the same synth crops: the same predictions, so the
    same figures, each side's speed and memory."""
    section = json.loads((bench / "results.json").read_text(encoding="utf-8"))["accuracy"]
    mlx, torch = section["mlx"], section["torch"]
    assert mlx["samples"] == torch["samples"] == 6 and len(mlx["labels"]) == 6
    assert section["identical_predictions"] == 6 and section["identical_figures"]
    assert mlx["figures"]["samples"] == 6 and mlx["summary"]["cer"] == mlx["figures"]["cer"]  # eval's own figures too
    assert mlx["labels"] == torch["labels"] and all(mlx["labels"])
    for side in (mlx, torch, section["mlx-batch-1"]):
        assert side["samples_per_s"] > 0 and side["rss_peak_bytes"] > 0
    assert section["mlx-batch-1"]["batch_size"] == 1 and section["mlx-batch-1"]["predictions"] == mlx["predictions"]
    assert "## Accuracy" in (bench / "results.md").read_text(encoding="utf-8")


def test_ragged_section(bench):
    """Every run read the same texts; one at a time wastes nothing, continuous less than static."""
    ragged = json.loads((bench / "results.json").read_text(encoding="utf-8"))["ragged"]
    greedy = ragged["modes"]["greedy"]
    runs = greedy["runs"]
    assert set(runs) == {"one at a time", "static 16", "continuous 16", "transformers padded 16"}
    assert all(n == 12 for n in greedy["identical_texts"].values())
    assert all(run["images_per_s"] > 0 for run in runs.values())
    one, static, continuous = runs["one at a time"], runs["static 16"], runs["continuous 16"]
    assert one["row_steps"] == one["needed_row_steps"] == static["needed_row_steps"] == continuous["needed_row_steps"]
    assert one["needed_row_steps"] < continuous["row_steps"] < static["row_steps"]
    assert greedy["lengths"]["max"] > 1.5 * greedy["lengths"]["median"]  # ragged (less so on the tiny model)
    assert "## Ragged output lengths" in (bench / "results.md").read_text(encoding="utf-8")


def test_markdown_and_png_are_written(bench):
    md = (bench / "results.md").read_text()
    for row in ("end-to-end latency per image, median", "decode time per step", "throughput at batch 2",
                "token ids identical", "cold load", "peak inference memory", "install footprint",
                "MLX with OpenBLAS opted out", "compiled / uncompiled", "texts identical to float32", "Encoder gap",
                "| q8 |", "## Detector", "pages per second, batch 4", "Detection agreement: 5/5 pages"):  # fmt: skip
        assert row in md
    assert (bench / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parity_comes_from_real_outputs(tiny, bench, tmp_path):
    """A deliberately perturbed MLX model must show less than 100% exact match."""
    perturbed = tmp_path / "perturbed"
    shutil.copytree(bench / "mlx-model-float32", perturbed)
    weights = mx.load(str(perturbed / "model.safetensors"))
    bias = weights["decoder.cls.predictions.bias"]
    noise = np.random.default_rng(0).normal(0, 20, size=bias.shape).astype(np.float32)
    weights["decoder.cls.predictions.bias"] = bias + mx.array(noise)
    mx.save_safetensors(str(perturbed / "model.safetensors"), weights, metadata={"format": "mlx"})
    out = tmp_path / "out"
    images = [str(p) for p in IMAGES[:3]]
    args = ["--model", str(tiny.folder), "--mlx-model", str(perturbed), "--images", *images, "--decoding", "greedy"]
    assert main([*args, "--out", str(out), *SMALL]) == 0
    parity = json.loads((out / "results.json").read_text())["parity"]["greedy"]
    assert parity["ids_match_rate"] < 1.0 and parity["text_match_rate"] < 1.0
    for diff in parity["differences"].values():
        assert diff["first_differing_step"] >= 1 and "logit_margin" in diff
    assert "Where the ids differ" in (out / "results.md").read_text()


def test_sync_waits_for_cuda_and_mps_and_nothing_else():
    """PyTorch's CUDA and MPS devices run asynchronously: every PyTorch side (OCR, detector, kernels)
    times through the one ``sync``, checked here with a stand-in for torch on each device."""
    from benchmarks.sides import TorchDetector, sync

    class Device:
        def __init__(self):
            self.calls = 0

        def synchronize(self):
            self.calls += 1

    class StandIn:
        cuda, mps = Device(), Device()

    torch = StandIn()
    for device, expected in (("cuda", (1, 0)), ("mps", (1, 1)), ("cpu", (1, 1))):
        sync(torch, device)
        assert (torch.cuda.calls, torch.mps.calls) == expected, device
    detector = TorchDetector("mps")
    detector.torch, detector.device = torch, "mps"
    detector.sync()
    assert torch.mps.calls == 2  # the detector side waits for MPS too (it waited for CUDA alone)


def test_paths_are_made_absolute_before_the_workers_run_in_the_checkout(tmp_path, monkeypatch):
    from benchmarks.__main__ import _absolute, build_parser

    monkeypatch.chdir(tmp_path)
    (tmp_path / "m").mkdir()
    args = build_parser("mlx-mangaocr bench").parse_args(["--model", "m", "--images", "a.png", "--out", "bout"])
    _absolute(args)
    assert (args.out, args.images, args.model) == (
        str(tmp_path / "bout"),
        [str(tmp_path / "a.png")],
        str(tmp_path / "m"),
    )


def test_detector_ops_breaks_a_decoder_layer_down(small_detector):
    """benchmarks/detector_ops.py: every operation of the decoder's first layer and of AIFI timed,
    the gather compared with numpy's, and one CPU stream against two."""
    from benchmarks.detector_ops import run

    result = run(str(small_detector.folder), repeats=1)
    assert len(result["seconds"]) == 20 and all(s > 0 for s in result["seconds"].values())
    assert "AIFI (10x10 map, 1 layer)" in result["seconds"] and "  softmax by rows, fused CPU exp" in result["seconds"]
    assert len(result["choices"]) == 16 and all(s > 0 for s in result["choices"].values())
    assert result["gather"]["rows"] > 0 and result["gather"]["numpy_take_s"] > 0
    assert result["exp_720k"]["one_stream_s"] > 0 and result["exp_720k"]["two_streams_s"] > 0


def test_training_benchmark_runs_and_reports(tmp_path):
    """The training benchmark at a toy size (the small configuration only): single glyphs, then
    texts of 1-3 characters of the set, both sides' step throughput, each stage's validations (the
    second from the first one's model), each stage's final model by length, the report."""
    import subprocess
    import sys

    out = tmp_path / "training"
    command = [sys.executable, "-m", "benchmarks.training", "--out", str(out), "--no-full", "--train-count", "24",
               "--val-count", "6", "--stages", "1:4", "3:2", "--batch-size", "4", "--throughput-steps", "1",
               "--warmup", "1"]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    results = json.loads((out / "training.json").read_text(encoding="utf-8"))
    (pair,) = results["throughput"].values()
    assert pair["mlx"]["samples_per_s"] > 0 and pair["torch"]["samples_per_s"] > 0
    assert pair["speed_ratio"] == pair["mlx"]["samples_per_s"] / pair["torch"]["samples_per_s"]
    first, second = results["curves"]
    assert [v["step"] for v in first["validation"]] == [1, 2, 3, 4] and first["start"] == "model-small"
    assert [v["step"] for v in second["validation"]] == [1, 2] and second["start"] == first["name"]
    assert json.loads((out / second["name"] / "training.json").read_text())["identity"]["model"] == str(
        out / first["name"]
    )
    glyphs = [json.loads(line)["text"] for line in (out / "train-set-1" / "labels.jsonl").read_text().splitlines()]
    assert all(len(t) == 1 and t in "あいうえおかきくけこ" for t in glyphs)
    texts = [json.loads(line)["text"] for line in (out / "train-set-3" / "labels.jsonl").read_text().splitlines()]
    assert all(1 <= len(t) for t in texts) and sum(len(t) <= 3 for t in texts) >= 0.8 * len(texts)
    for curve in (first, second):  # the final model by length: the same crops as the last validation
        by_length = curve["by_length"]
        assert sum(f["samples"] for f in by_length.values()) == 6
        exact = sum(f["samples"] * f["exact_match"] for f in by_length.values()) / 6
        assert exact == pytest.approx(curve["validation"][-1]["val_exact_match"])
    report = (out / "training.md").read_text(encoding="utf-8")
    assert report.count("| step | validation CER | exact match |") == 2
    assert report.count("| characters | crops | CER | exact match |") == 2
    assert (out / first["name"] / "training.png").is_file()


def test_a_workers_peak_memory_is_its_own_not_the_harness_s():
    """A worker's peak RSS is its own: ``getrusage``'s ``ru_maxrss`` in a process the harness
    spawned keeps the harness's RSS at the spawn (here 800 MiB more than the worker ever holds)."""
    import subprocess

    from benchmarks.sides import rss_bytes

    held = np.ones(800 * 2**20 // 8)  # the harness holds 800 MiB (written, so resident)
    code = "from benchmarks.sides import peak_rss_bytes, rss_bytes; print(peak_rss_bytes(), rss_bytes())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    peak, now = int(out[0]), int(out[1])
    assert now <= peak < rss_bytes() - 700 * 2**20, (peak, now, rss_bytes())
    del held
