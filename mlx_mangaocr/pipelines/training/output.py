"""A training run's output folder: the run record that recognises it, the resumable state, the
best and final model folders, written so that a kill at any moment loses nothing.

    DIR/training.json      the run's settings; what makes the weights (``identity``) recognises it
    DIR/resume/            the resumable state: state.json names model-STEP and optimizer-STEP
    DIR/best/              the best checkpoint by validation CER (a model folder)
    DIR/metrics.jsonl      one line per logged step and per validation
    DIR/training.png       loss and validation CER against steps
    DIR/model.safetensors  with config.json, vocab.txt, ...: the final weights, a model folder

Every file is written to a temporary name, synced and renamed; ``resume/state.json`` is written
last, so it always names a complete step. Folders (``best/``) are written beside and swapped in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from ...core.atomic_files import write_atomic, write_atomic_with
from ...core.errors import MangaOcrError
from ...core.locks import RunLock

RECORD = "training.json"
RESUME = "resume"
BEST = "best"
METRICS = "metrics.jsonl"
PLOT = "training.png"
FORMAT = "mlx-mangaocr-training"
LOCK = ".training.lock"  # held by the run working in DIR (``run_lock``)
MODEL_FILES = ("model.safetensors", "config.json", "preprocessor_config.json", "vocab.txt",
               "special_tokens_map.json", "tokenizer_config.json", "generation_config.json")  # fmt: skip
OURS = {RECORD, RESUME, BEST, METRICS, PLOT, *MODEL_FILES}


class OutputError(MangaOcrError):
    """The output folder cannot take this run (it holds another, or is not a training output)."""


def read_record(folder: Path) -> dict | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise OutputError(f"{path} cannot be read ({e}); move it away to use this folder") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT or not isinstance(record.get("identity"), dict):
        raise OutputError(f"{path} is not a training record of this program; give another folder")
    return record


def differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def claim(folder: Path, identity: dict, resume: bool, force: bool) -> bool:
    """Make ``folder`` this run's: True when there is a state to resume. Refuses a folder that holds
    another run (unless ``force``), this run without ``resume`` or ``force``, or anything that is
    not a training output (even with ``force``: nothing but a run's own files is ever removed)."""
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file, not a folder")
    entries = sorted(p.name for p in folder.iterdir() if p.name != LOCK) if folder.is_dir() else []
    if not entries:
        return False
    record = read_record(folder)
    if record is None:  # a model folder, an export, anything else: never ours to replace
        raise OutputError(f"{folder} is not empty and holds no training run ({entries[0]}, ...); "
                          "give an empty or new folder")  # fmt: skip
    if force:
        clear(folder)
        return False
    changed = differences(record["identity"], identity)
    if changed:
        raise OutputError(f"{folder} holds another training run (it differs in {', '.join(changed)}); "
                          "give another folder, or --force to replace it")  # fmt: skip
    if not resume:
        raise OutputError(f"{folder} holds this run already; pass --resume to continue it or --force to start over")
    return (folder / RESUME / "state.json").is_file()


def clear(folder: Path) -> None:
    """Remove a run's own files (and the temporaries of its writes); leave anything else."""
    for name in OURS:
        path = folder / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    for path in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            path.unlink()
    for name in (f"{BEST}.new", f"{BEST}.old", ".final.new"):
        shutil.rmtree(folder / name, ignore_errors=True)


def run_lock(folder: Path) -> RunLock:
    """The lock one run holds on DIR for its whole length (``DIR/.training.lock``, made with DIR)."""

    class _Lock(RunLock):
        def acquire(self):
            folder.mkdir(parents=True, exist_ok=True)
            return super().acquire()

    return _Lock(folder / LOCK, what=f"the training output {folder}")


def recover_best(folder: Path) -> None:
    """Put ``best/`` back where a kill between ``write_model``'s two renames left only ``best.old``."""
    best, old = folder / BEST, folder / f"{BEST}.old"
    if not best.exists() and old.is_dir():
        old.rename(best)


def update_state(folder: Path, **extra) -> None:
    """Rewrite ``resume/state.json`` with ``extra`` changed (same weights files)."""
    path = folder / RESUME / "state.json"
    state = json.loads(path.read_text(encoding="utf-8"))
    state.update(extra)
    write_atomic(path, json.dumps(state, indent=2))


def write_record(folder: Path, record: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / RECORD, json.dumps({"format": FORMAT, **record}, indent=2, ensure_ascii=False))


def save_arrays(path: Path, arrays: dict[str, mx.array]) -> None:
    """``arrays`` to a safetensors file at ``path``, through a synced temporary file and a rename."""
    write_atomic_with(path, lambda tmp: mx.save_safetensors(str(tmp), arrays), suffix=".safetensors")


def save_state(folder: Path, step: int, model, optimizer, extra: dict) -> None:
    """The resumable state after ``step`` updates: every weight, the optimizer state, and
    ``extra`` (best CER, ...). A kill leaves the previous state or this one."""
    resume = folder / RESUME
    resume.mkdir(parents=True, exist_ok=True)
    names = {"model": f"model-{step:08d}.safetensors", "optimizer": f"optimizer-{step:08d}.safetensors"}
    save_arrays(resume / names["model"], dict(tree_flatten(model.parameters())))
    save_arrays(resume / names["optimizer"], dict(tree_flatten(optimizer.state)))
    write_atomic(resume / "state.json", json.dumps({"step": step, "files": names, **extra}, indent=2))
    for path in resume.iterdir():
        if path.name not in names.values() and path.name != "state.json":
            with contextlib.suppress(OSError):
                path.unlink()


def load_state(folder: Path, model, optimizer) -> dict:
    """Restore the weights and optimizer state saved by ``save_state``; return state.json."""
    resume = folder / RESUME
    try:
        state = json.loads((resume / "state.json").read_text(encoding="utf-8"))
        files = state["files"]
        weights = mx.load(str(resume / files["model"]))
        moments = mx.load(str(resume / files["optimizer"]))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise OutputError(f"{resume} cannot be resumed ({e}); pass --force to start over") from None
    model.load_weights(list(weights.items()), strict=True)
    optimizer.state = tree_unflatten(list(moments.items()))
    mx.eval(model.parameters(), optimizer.state)
    return state


def resumed_metrics(folder: Path, step: int, validated: bool = True) -> None:
    """Drop the metrics lines written after ``step`` (a killed run's last, unsaved steps), and
    ``step``'s validation line when its validation was cut short (it is done again)."""
    path = folder / METRICS
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            at = entry.get("step", 0)
        except (json.JSONDecodeError, AttributeError):
            continue
        if at < step or (at == step and (validated or "val_cer" not in entry)):
            kept.append(line)
    write_atomic(path, "".join(line + "\n" for line in kept))


def write_model(folder: Path, write) -> None:
    """A model folder written by ``write(path)`` beside ``folder`` and swapped in whole."""
    new = folder.with_name(folder.name + ".new")
    old = folder.with_name(folder.name + ".old")
    for path in (new, old):
        shutil.rmtree(path, ignore_errors=True)
    try:
        write(new)
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def write_final(folder: Path, write) -> None:
    """The final model's files into the run folder itself: written to a folder beside it, then
    each file moved in (renames within one file system)."""
    staging = folder / ".final.new"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        write(staging)
        for path in staging.iterdir():
            os.replace(path, folder / path.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
