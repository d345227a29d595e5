"""The two implementations behind one small interface, so that one measuring loop serves both,
and what every section measures with: ``timed``, ``sync``, ``facts`` and ``MODES``.

An OCR side: ``load()``, ``preprocess(images) -> pixels``, ``encode(pixels)``, ``generate(pixels,
settings) -> ids``, ``text(ids) -> str``, ``sync()``, ``memory() -> dict``, ``facts() -> dict``.
A detector side: ``load(model)``, ``preprocess(pages)``, ``model(pixels)``, ``postprocess(raw, sizes,
threshold)``, ``facts()``. Every timed call ends with the side's own synchronization (``mx.eval``,
or ``sync`` for PyTorch's CUDA and MPS devices, which run asynchronously). The PyTorch sides are the
references of ``testing.reference`` with these measuring hooks added.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from pathlib import Path

from testing.reference import TorchDetector as TorchDetectorReference
from testing.reference import TorchOcr, sync

MODES = {"greedy": {"num_beams": 1}, "beam": {}}  # beam: the checkpoint's settings, as manga-ocr


def timed(fn, *args):
    """``fn(*args)`` and the seconds it took (the side's calls synchronize before they return)."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def rss_bytes() -> int | None:
    """Current resident set size (Linux), else None."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def hwm_bytes() -> int | None:
    """This address space's resident high-water mark (Linux's ``VmHWM``), else None."""
    try:
        status = Path("/proc/self/status").read_text()
        return 1024 * int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    except (OSError, StopIteration, IndexError, ValueError):
        return None


def peak_rss_bytes() -> int:
    """This process's peak resident set size. On Linux, the address space's own high-water mark
    (``hwm_bytes``), not ``getrusage``: a worker is spawned by the harness (``vfork`` and ``exec``),
    and its ``ru_maxrss`` keeps the harness's RSS at that moment, which hides any smaller peak of
    the worker's own."""
    hwm = hwm_bytes()
    if hwm is not None:
        return hwm
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def facts(side: str, device: str | None = None) -> dict:
    """The environment a side runs in: its framework's version, device and BLAS ("mlx" or "torch")."""
    if side == "mlx":
        import mlx.core as mx

        from mlx_mangaocr.core import blas as _blas

        if sys.platform == "darwin":
            blas = "Accelerate (CPU) / Metal (GPU)"
        elif mx.default_device() == mx.gpu:
            blas = "cuBLAS (GPU)"
        else:
            blas = _blas.loaded_blas or "MLX's bundled reference BLAS"
        return {"mlx_version": mx.__version__, "device": str(mx.default_device()), "blas": blas}
    import torch

    config = torch.__config__.show()
    blas = next((line.split("=", 1)[1] for line in config.splitlines() if "BLAS_INFO=" in line), "unknown")
    return {
        "torch_version": torch.__version__,
        "device": device,
        "blas": blas.split(",")[0],
        "threads": torch.get_num_threads(),
        "processor": platform.processor(),
    }


class MlxSide:
    name = "mlx"

    def __init__(self, model: str, dtype: str | None = None):
        self.model_path, self.dtype = model, dtype

    def load(self) -> None:
        # mlx_mangaocr first: it loads OpenBLAS before MLX.
        from mlx_mangaocr import load_ocr
        import mlx.core as mx  # isort: skip

        self.mx = mx
        self.processor = load_ocr(self.model_path, dtype=self.dtype)

    def preprocess(self, images):
        pixels = self.processor.pixels(images)
        self.mx.eval(pixels)
        return pixels

    def encode(self, pixels):
        hidden = self.processor.model.encode(pixels)
        self.mx.eval(hidden)
        return hidden

    def generate(self, pixels, settings: dict) -> list[list[int]]:
        return self.processor.generate_from_pixels(pixels, **settings)

    def text(self, ids: list[int]) -> str:
        return self.processor.decode(ids)

    def sync(self) -> None:
        self.mx.synchronize()

    def reset_peak(self) -> None:
        self.mx.reset_peak_memory()

    def memory(self) -> dict:
        return {
            "device_peak_bytes": int(self.mx.get_peak_memory()),
            "device_active_bytes": int(self.mx.get_active_memory()),
        }

    def facts(self) -> dict:
        return {**facts("mlx"), "dtype": str(self.processor.model.encoder.layernorm.weight.dtype)}


class TorchSide(TorchOcr):
    """manga-ocr on PyTorch (``testing.reference.TorchOcr``), with the measuring hooks."""

    def reset_peak(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def memory(self) -> dict:
        if self.device == "cuda":
            return {"device_peak_bytes": int(self.torch.cuda.max_memory_allocated())}
        if self.device == "mps":
            return {"device_peak_bytes": int(self.torch.mps.driver_allocated_memory())}
        return {}  # CPU: the harness reports RSS growth instead

    def facts(self) -> dict:
        return facts("torch", self.device)


class MlxDetector:
    name = "mlx"

    def load(self, model: str) -> None:
        import mlx_mangaocr  # first: it loads OpenBLAS, which must come before mlx.core  # noqa: I001
        import mlx.core as mx
        from mlx_mangaocr.models.detection.postprocess import detections

        self.mx, self.post = mx, detections
        self.detector = mlx_mangaocr.load_detector(model)

    def preprocess(self, pages):
        return self.detector.preprocess(pages)

    def model(self, pixels):
        out = self.detector.run(pixels)  # evaluated
        return out.logits, out.boxes

    def postprocess(self, raw, sizes, threshold):
        import numpy as np

        logits, boxes = (np.array(a) for a in raw)
        config = self.detector.config
        return [
            [(d.label, list(d.box), d.score) for d in self.post(logits[i], boxes[i], s, threshold, config.id2label)]
            for i, s in enumerate(sizes)
        ]

    def facts(self) -> dict:
        return facts("mlx")


class TorchDetector(TorchDetectorReference):
    """transformers' detector (``testing.reference.TorchDetector``), with the measuring hooks."""

    def facts(self) -> dict:
        return facts("torch", self.device)


__all__ = ["MODES", "MlxDetector", "MlxSide", "TorchDetector", "TorchSide", "facts", "sync", "timed"]
