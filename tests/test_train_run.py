"""``mlx-mangaocr train`` as a user runs it: it learns (overfits a few dozen samples), the whole
pipeline equals a PyTorch loop, a kill -9 and --resume give the same weights bit for bit, two
ranks give one process's weights, and bad input gets a message and loses nothing."""

from __future__ import annotations

import copy
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from oracle import record
from test_distributed import LAUNCH, free_ports
from test_training import assert_updates_close, our_names
from transformers import BertJapaneseTokenizer

from mlx_mangaocr.frontends.cli import main as cli
from mlx_mangaocr.loading.ocr import load_checkpoint
from mlx_mangaocr.models.ocr.image_processing import OcrPreprocessor
from mlx_mangaocr.models.ocr.loss import label_array
from mlx_mangaocr.pipelines.evaluation.run import evaluate
from mlx_mangaocr.pipelines.ocr import load_ocr
from mlx_mangaocr.pipelines.training import TrainingError, TrainSettings, output, train
from mlx_mangaocr.pipelines.training.batches import Order
from testing import torch_training
from testing.synthetic import load_oracle

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples" / "labels.jsonl"
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


def weights(folder: Path) -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(folder / "model.safetensors")).items()}


def run(*args: str) -> int:
    return cli(["train", "--no-progress", *args])


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """20 synthetic crops with short labels (the first 3 characters of synth's texts)."""
    out = tmp_path_factory.mktemp("synth") / "set"
    assert cli(["synth", str(out), "--count", "20", "--seed", "3", "--no-progress"]) == 0
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    short = out / "short.jsonl"
    short.write_text("".join(json.dumps({"image": r["image"], "text": r["text"][:3]}, ensure_ascii=False) + "\n"
                             for r in rows), encoding="utf-8")  # fmt: skip
    return short


def test_overfits_a_few_dozen_samples(tiny, crops, tmp_path):
    """Exact match on the training samples goes from 0 to at least 90%."""
    from mlx_mangaocr.pipelines.datasets import open_dataset

    samples = open_dataset(crops).samples
    before = evaluate([("start", load_ocr(tiny.folder))], samples, decoding={"num_beams": 1}).summaries[0]
    began = time.perf_counter()
    code = run("--model", str(tiny.folder), "--train", str(crops), "--val", str(crops), "--steps", "240",
               "--batch-size", "10", "--lr", "2e-3", "--warmup", "10", "--no-augment", "--dropout", "off",
               "--output", str(tmp_path / "run"))  # fmt: skip
    seconds = time.perf_counter() - began
    assert code == 0
    after = evaluate([("tuned", load_ocr(tmp_path / "run"))], samples, decoding={"num_beams": 1}).summaries[0]
    assert before["exact_match"] == 0.0
    assert after["exact_match"] >= 0.9, after
    record("train: overfit 20 crops, 240 steps (tiny model)",
           f"exact match {before['exact_match']:.0%} -> {after['exact_match']:.0%}, {seconds:.0f} s")  # fmt: skip
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines if "loss" in m] == list(range(1, 241))
    assert lines[-1]["val_exact_match"] == after["exact_match"]
    assert (tmp_path / "run" / "best" / "model.safetensors").is_file()
    assert (tmp_path / "run" / "training.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _examples(model_folder: Path) -> tuple[np.ndarray, list[list[int]]]:
    """EXAMPLES' pixels (inference's preprocessing) and label ids from transformers' tokenizer."""
    rows = [json.loads(line) for line in EXAMPLES.read_text(encoding="utf-8").splitlines()]
    tok = BertJapaneseTokenizer.from_pretrained(model_folder)
    preprocess = OcrPreprocessor.from_folder(model_folder)
    pixels = np.stack([preprocess(EXAMPLES.parent / r["image"]) for r in rows])
    return pixels, [tok(r["text"], truncation=True, max_length=300).input_ids for r in rows]


def test_the_pipeline_equals_a_pytorch_loop(tiny, tmp_path):
    """``train`` from a JSONL file (labels by its own tokenizer, images by its own preprocessing,
    two micro-batches a step, clipping) against transformers' tokenizer, labels path and
    torch.optim in float64, SGD (linear in the gradient: every element within fp32_bound)."""
    out = tmp_path / "run"
    settings = TrainSettings(model=str(tiny.folder), train=[str(EXAMPLES)], output=str(out), steps=3, batch_size=4,
                             grad_accum=2, lr=0.5, optimizer="sgd", max_grad_norm=0.05, augment=False,
                             shuffle=False, dropout=0.0, save_every=0)  # fmt: skip
    train(settings)
    ours = weights(out)
    pixels, labels = _examples(tiny.folder)
    steps = []
    for s in range(3):
        part = slice(4 * s, 4 * s + 4)
        micro = [(pixels[part][i : i + 2], label_array(labels[part][i : i + 2], 0)) for i in (0, 2)]
        steps.append(micro)
    options = dict(optimizer="sgd", lr=0.5, schedule="linear", warmup=0, max_grad_norm=0.05)
    hf32 = load_oracle(tiny.folder)
    hf64 = copy.deepcopy(hf32).double()
    torch_training.train_loop(hf32, steps, **options)
    torch_training.train_loop(hf64, steps, **options)
    model = load_checkpoint(tiny.folder).model
    p32, p64 = our_names(model, dict(hf32.named_parameters())), our_names(model, dict(hf64.named_parameters()))
    start = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    worst = assert_updates_close(ours, p32, p64, start)
    record("train pipeline vs PyTorch (SGD, 3 steps, accumulation, clipping): worst error / PyTorch's", worst)


def _train_command(model: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "mlx_mangaocr", "train", "--no-progress", "--model", str(model), "--train",
            str(EXAMPLES), "--steps", "8", "--batch-size", "4", "--save-every", "1", "--output", str(out),
            "--lr", "1e-3", *extra]  # fmt: skip


def test_a_run_killed_and_resumed_ends_with_the_same_weights(tiny, tmp_path):
    """kill -9 in the middle (dropout and augmentation on, shuffled, bucketed), then --resume:
    the weights equal an uninterrupted run's bit for bit."""
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run(_train_command(tiny.folder, whole), env=ENV, check=True, capture_output=True, timeout=300)
    process = subprocess.Popen(_train_command(tiny.folder, cut), env=ENV, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    state = cut / output.RESUME / "state.json"
    deadline = time.time() + 240
    while time.time() < deadline:
        try:
            if json.loads(state.read_text())["step"] >= 3:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = json.loads(state.read_text())["step"]
    assert 3 <= killed_at < 8, killed_at
    again = subprocess.run(_train_command(tiny.folder, cut), env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 1 and "holds this run already; pass --resume" in again.stderr
    done = subprocess.run(_train_command(tiny.folder, cut, "--resume"), env=ENV, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    a, b = weights(whole), weights(cut)
    assert all((a[k] == b[k]).all() for k in a)
    losses = [json.loads(x) for x in (cut / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in losses] == list(range(1, 9))  # the killed run's unsaved lines are gone
    record("train: killed at step, resumed", f"step {killed_at} of 8, weights equal bit for bit")


def _pytorch_sgd_references(model_folder: Path, steps: int, batch_size: int, lr: float, max_grad_norm: float):
    """The parameters after ``steps`` SGD steps of the CLI's default order (shuffled and bucketed,
    seed 0) over EXAMPLES, from transformers' tokenizer and torch.optim: float32 and float64 (in this
    library's names), and the start."""
    pixels, labels = _examples(model_folder)
    order = Order([len(ids) for ids in labels], batch_size, 0, True)
    batches = []
    for step in range(steps):
        index = order.batch(step)
        batches.append([(pixels[index], label_array([labels[i] for i in index], 0))])
    options = dict(optimizer="sgd", lr=lr, schedule="linear", warmup=0, max_grad_norm=max_grad_norm)
    hf32 = load_oracle(model_folder)
    hf64 = copy.deepcopy(hf32).double()
    torch_training.train_loop(hf32, batches, **options)
    torch_training.train_loop(hf64, batches, **options)
    model = load_checkpoint(model_folder).model
    start = {k: np.array(v) for k, v in tree_flatten(model.parameters())}
    return our_names(model, dict(hf32.named_parameters())), our_names(model, dict(hf64.named_parameters())), start


def test_two_ranks_give_one_process_weights_and_resume_with_one(tiny, tmp_path):
    """``mlx.launch -n 2``: each rank takes half of every global batch; gradients are summed and
    normalized by the whole batch's tokens, so the weights are one process's: the 2-rank run, the
    1-process run and a 2-rank run killed after its second saved state (rank 0 dies, as an
    unplugged host) and resumed by one process each equal a float64 PyTorch loop over the same
    batches within ``assert_updates_close``'s bound (SGD with clipping, 4 steps)."""
    one, two, cut = tmp_path / "one", tmp_path / "two", tmp_path / "cut"
    common = ["--batch-size", "4", "--optimizer", "sgd", "--lr", "0.5", "--dropout", "off", "--no-augment",
              "--no-progress", "--train", str(EXAMPLES), "--model", str(tiny.folder)]  # fmt: skip

    def launch(*args: str, fault: str | None = None):
        command = [str(LAUNCH), "-n", "2", "--backend", "ring", "-p", str(free_ports(2)), "--", sys.executable,
                   "-m", "mlx_mangaocr", "train", *common, *args]  # fmt: skip
        env = {**ENV, "MLX_MANGAOCR_TEST_FAULT": fault} if fault else ENV
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    p32, p64, start = _pytorch_sgd_references(tiny.folder, 4, 4, 0.5, 1.0)
    assert run(*common, "--steps", "4", "--output", str(one)) == 0
    record("train: 1 process vs PyTorch float64, 4 SGD steps, worst relative error / PyTorch fp32's",
           assert_updates_close(weights(one), p32, p64, start))  # fmt: skip
    done = launch("--steps", "4", "--output", str(two))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((two / "training.json").read_text())["ranks"] == 2
    worst = assert_updates_close(weights(two), p32, p64, start)
    record("train: 2 ranks vs PyTorch float64, 4 SGD steps, worst relative error / PyTorch fp32's", worst)
    killed = launch("--steps", "4", "--save-every", "1", "--output", str(cut), fault="0:2")
    assert "rank 0 exited with code -9" in killed.stdout + killed.stderr  # mlx.launch itself exits 0
    assert json.loads((cut / output.RESUME / "state.json").read_text())["step"] == 2
    assert not (cut / "model.safetensors").exists()
    assert run(*common, "--steps", "4", "--save-every", "1", "--output", str(cut), "--resume") == 0
    resumed = assert_updates_close(weights(cut), p32, p64, start)
    record("train: 2 ranks killed at step 2, resumed by 1 process, vs PyTorch float64 / PyTorch fp32's", resumed)


def test_another_run_or_a_foreign_folder_is_refused(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--model", str(tiny.folder), "--train", str(EXAMPLES), "--steps", "1", "--batch-size", "4",
            "--output", str(out)]  # fmt: skip
    assert run(*base) == 0
    before = weights(out)
    assert run(*base, "--lr", "1e-3") == 1
    assert "holds another training run (it differs in lr)" in capsys.readouterr().err
    assert all((before[k] == weights(out)[k]).all() for k in before)
    assert run(*base, "--lr", "1e-3", "--force") == 0
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"x")
    for extra in ([], ["--force"]):
        assert run(*base[:-1], str(foreign), *extra) == 1
        assert "give an empty or new folder" in capsys.readouterr().err
    assert (foreign / "holiday.jpg").read_bytes() == b"x"
    for length in ([], ["--steps", "1", "--epochs", "1"]):  # exactly one of them
        with pytest.raises(SystemExit) as stop:
            run("--model", str(tiny.folder), "--train", str(EXAMPLES), "--output", str(out), *length)
        assert stop.value.code == 2
    assert run(*base, "--grad-accum", "3") == 2
    assert "not a multiple of --grad-accum 3" in capsys.readouterr().err
    model = ["--model", str(tiny.folder), "--steps", "1"]
    assert run(*model, "--train", str(EXAMPLES), "--batch-size", "40", "--output", str(tmp_path / "big")) == 1
    assert "fewer than one batch of 40" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "missing.png", "text": "x"}\n' * 4, encoding="utf-8")
    assert run(*model, "--train", str(bad), "--batch-size", "4", "--output", str(tmp_path / "b")) == 2
    assert "missing.png" in capsys.readouterr().err


def test_a_quantized_model_is_refused(tiny, tmp_path, capsys):
    q = tmp_path / "q8"
    assert cli(["convert", str(tiny.folder), "--quantize", "--q-bits", "8", "-o", str(q)]) == 0
    capsys.readouterr()
    assert run("--model", str(q), "--train", str(EXAMPLES), "--steps", "1", "--batch-size", "4",
               "--output", str(tmp_path / "run")) == 1  # fmt: skip
    assert "is quantized" in capsys.readouterr().err


def test_a_diverging_loss_stops_and_keeps_the_last_good_step(tiny, tmp_path, capsys):
    """Update 1 has lr 0 (warmup), update 2 a rate of 5e29: the loss of step 3 is not finite. The
    run stops naming step 3 and keeps the state of step 1, whose next loss was finite; the state
    of step 2 (its weights gave the NaN) is never written, nor a final model."""
    out = tmp_path / "run"
    code = run("--model", str(tiny.folder), "--train", str(EXAMPLES), "--steps", "4", "--batch-size", "4",
               "--optimizer", "sgd", "--lr", "1e30", "--warmup", "2", "--lr-schedule", "constant",
               "--max-grad-norm", "0", "--save-every", "1", "--output", str(out))  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "the loss diverged at step 3" in err and "the state after step 1 is kept" in err, err
    state = json.loads((out / output.RESUME / "state.json").read_text())
    assert state["step"] == 1
    saved = mx.load(str(out / output.RESUME / state["files"]["model"]))
    start = weights(tiny.folder) if (tiny.folder / "model.safetensors").is_file() else None
    assert all(bool(mx.isfinite(v).all()) for v in saved.values())
    del start
    assert not (out / "model.safetensors").exists()  # no final model from a diverged run


def test_a_full_disk_keeps_the_last_saved_state(tiny, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = output.save_arrays
    calls = {"n": 0}

    def full_after_two(path, arrays):
        calls["n"] += 1
        if calls["n"] > 4:  # two saves of two files each, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, arrays)

    monkeypatch.setattr(output, "save_arrays", full_after_two)
    settings = TrainSettings(model=str(tiny.folder), train=[str(EXAMPLES)], output=str(out), steps=4, batch_size=4,
                             save_every=1)  # fmt: skip
    with pytest.raises(TrainingError, match="No space left on device; the state of step 2 is kept"):
        train(settings)
    state = json.loads((out / output.RESUME / "state.json").read_text())
    assert state["step"] == 2
    assert sorted(p.name for p in (out / output.RESUME).iterdir()) == sorted([*state["files"].values(), "state.json"])
    monkeypatch.setattr(output, "save_arrays", real)
    settings.resume = True
    result = train(settings)
    assert result.steps == 4


def test_what_a_hostile_user_tries(tiny, tmp_path, capsys):
    """The review's cases: each gets one message and loses nothing."""
    common = ["--train", str(EXAMPLES), "--steps", "1", "--batch-size", "4"]
    # training into the folder of the model it starts from
    run_dir = tmp_path / "run"
    assert run("--model", str(tiny.folder), *common, "--val", str(EXAMPLES), "--output", str(run_dir)) == 0
    before = weights(run_dir)
    for model, out in ((run_dir, run_dir), (run_dir / "best", run_dir)):
        assert run("--model", str(model), *common, "--output", str(out), "--force") == 1
        assert "the run would replace the model it starts from" in capsys.readouterr().err
    assert all((before[k] == weights(run_dir)[k]).all() for k in before)
    # a finished run resumed: says so, changes nothing
    files = {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")}
    assert run("--model", str(tiny.folder), *common, "--val", str(EXAMPLES), "--output", str(run_dir), "--resume") == 0
    assert "is done (1 steps); nothing to do" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in run_dir.rglob("*")} == files
    # a run killed during its last validation: --resume validates again, once
    state_path = run_dir / output.RESUME / "state.json"
    state = json.loads(state_path.read_text())
    state_path.write_text(json.dumps({**state, "validated": False, "best": None}))
    record = json.loads((run_dir / output.RECORD).read_text())
    (run_dir / output.RECORD).write_text(json.dumps({**record, "status": "running"}))
    shutil.rmtree(run_dir / "best")
    assert run("--model", str(tiny.folder), *common, "--val", str(EXAMPLES), "--output", str(run_dir), "--resume") == 0
    assert (run_dir / "best" / "model.safetensors").is_file()
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1, 1] and "val_cer" in lines[1]
    assert json.loads((run_dir / output.RECORD).read_text())["status"] == "done"
    # another run working in the folder holds its lock: a second is refused
    with output.run_lock(run_dir):
        assert run("--model", str(tiny.folder), *common, "--output", str(run_dir), "--resume") == 1
        assert "another run is working on the training output" in capsys.readouterr().err
    # the data changed under a run: --resume refuses it
    fewer = tmp_path / "fewer.jsonl"
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()[:8]
    absolute = [line.replace('"image": "', f'"image": "{EXAMPLES.parent}/') for line in lines]
    fewer.write_text("".join(line + "\n" for line in absolute), encoding="utf-8")
    assert run("--model", str(tiny.folder), "--train", str(fewer), "--steps", "2", "--batch-size", "4",
               "--output", str(tmp_path / "d"), "--save-every", "1") == 0  # fmt: skip
    fewer.write_text("".join(fewer.read_text(encoding="utf-8").splitlines(keepends=True)[:4]), encoding="utf-8")
    assert run("--model", str(tiny.folder), "--train", str(fewer), "--steps", "2", "--batch-size", "4",
               "--output", str(tmp_path / "d"), "--save-every", "1", "--resume") == 1  # fmt: skip
    assert "differs in data" in capsys.readouterr().err
    assert all((before[k] == weights(run_dir)[k]).all() for k in before)
    # an exported model folder is no training run: --force does not replace it
    export = tmp_path / "hf"
    assert cli(["export", str(run_dir), "-o", str(export)]) == 0
    assert run("--model", str(tiny.folder), *common, "--output", str(export), "--force") == 1
    assert "holds no training run" in capsys.readouterr().err
    assert (export / "model.safetensors").is_file()
    # and export --force does not replace a training run
    assert cli(["export", str(tiny.folder), "-o", str(run_dir), "--force"]) == 2
    assert "--force replaces only a model folder" in capsys.readouterr().err
    assert (run_dir / "resume" / "state.json").is_file()
    # gradient checkpointing would draw other dropout masks in the backward pass
    assert run("--model", str(tiny.folder), *common, "--output", str(tmp_path / "c"), "--checkpoint-encoder",
               "--dropout", "0.1") == 1  # fmt: skip
    assert "--checkpoint-encoder recomputes the encoder" in capsys.readouterr().err
    # a validation image that cannot be read stops the run before it starts, or is left out
    val = tmp_path / "val.jsonl"
    val.write_text('{"image": "gone.png", "text": "x"}\n', encoding="utf-8")
    assert run("--model", str(tiny.folder), *common, "--val", str(val), "--output", str(tmp_path / "v")) == 2
    assert "gone.png" in capsys.readouterr().err and not (tmp_path / "v" / "resume").exists()
    # a label the tokenizer cannot take (a piece MeCab would crash on) is a bad sample
    rows = [json.loads(r) for r in EXAMPLES.read_text(encoding="utf-8").splitlines()][:5]
    for r in rows:
        r["image"] = str(EXAMPLES.parent / r["image"])
    rows[4]["text"] = "あ" * 40000
    long = tmp_path / "long.jsonl"
    long.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    assert run("--model", str(tiny.folder), "--train", str(long), "--steps", "1", "--batch-size", "4",
               "--output", str(tmp_path / "l")) == 2  # fmt: skip
    assert "long.jsonl:5: the label cannot be tokenized" in capsys.readouterr().err
    assert run("--model", str(tiny.folder), "--train", str(long), "--steps", "1", "--batch-size", "4",
               "--output", str(tmp_path / "l"), "--skip-bad") == 0  # fmt: skip
    assert "left out" in capsys.readouterr().err
