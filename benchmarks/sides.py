"""The two implementations behind one small interface, so that one measuring loop serves both.

Each side: ``load()``, ``preprocess(images) -> pixels``, ``encode(pixels)``, ``generate(pixels,
settings) -> ids``, ``text(ids) -> str``, ``sync()``, ``memory() -> dict``, ``facts() -> dict``.
Every timed call ends with the side's own synchronization (``mx.eval`` / device synchronize).
"""

from __future__ import annotations

import os
import platform
import resource
import sys
from pathlib import Path


def rss_bytes() -> int | None:
    """Current resident set size (Linux), else None."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


def trim(row: list[int], eos: int) -> list[int]:
    """A generate() row up to and including its first end token."""
    return row[: row.index(eos, 1) + 1] if eos in row[1:] else row


class MlxSide:
    name = "mlx"

    def __init__(self, model: str, dtype: str | None = None):
        self.model_path, self.dtype = model, dtype

    def load(self) -> None:
        # mlx_mangaocr first: it loads OpenBLAS before MLX.
        from mlx_mangaocr import load_mlx_processor  # isort: skip
        import mlx.core as mx  # isort: skip

        self.mx = mx
        self.processor = load_mlx_processor(self.model_path, dtype=self.dtype)

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
        import mlx.core as mx

        from mlx_mangaocr import _blas

        if sys.platform == "darwin":
            blas = "Accelerate (CPU) / Metal (GPU)"
        elif mx.default_device() == mx.gpu:
            blas = "cuBLAS (GPU)"
        else:
            blas = _blas.loaded_blas or "MLX's bundled reference BLAS"
        return {
            "mlx_version": mx.__version__,
            "device": str(mx.default_device()),
            "blas": blas,
            "dtype": str(self.processor.model.encoder.layernorm.weight.dtype),
        }


class TorchSide:
    name = "torch"

    def __init__(self, model: str, device: str = "auto"):
        self.model_path, self.requested_device = model, device

    @staticmethod
    def pick_device(requested: str) -> str:
        import torch

        if requested != "auto":
            return requested
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cuda" if torch.cuda.is_available() else "cpu"

    def load(self) -> None:
        import torch

        from .upstream import load

        self.torch = torch
        self.device = self.pick_device(self.requested_device)
        self.model, self.tokenizer, self.image_processor = load(self.model_path, self.device)
        self.max_length = self.model.generation_config.max_length
        self.eos = self.model.generation_config.eos_token_id

    def preprocess(self, images):
        from .upstream import preprocess

        pixels = preprocess(self.image_processor, images).to(self.device)
        self.sync()
        return pixels

    def encode(self, pixels):
        with self.torch.no_grad():
            hidden = self.model.encoder(pixels).last_hidden_state
        self.sync()
        return hidden

    def generate(self, pixels, settings: dict) -> list[list[int]]:
        settings = {"max_length": self.max_length, **settings}  # manga-ocr passes max_length=300
        with self.torch.no_grad():
            out = self.model.generate(pixels, **settings)
        self.sync()
        return [trim(row, self.eos) for row in out.tolist()]

    def text(self, ids: list[int]) -> str:
        from .upstream import post_process

        return post_process(self.tokenizer.decode(ids, skip_special_tokens=True))

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        elif self.device == "mps":
            self.torch.mps.synchronize()

    def reset_peak(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def memory(self) -> dict:
        if self.device == "cuda":
            return {"device_peak_bytes": int(self.torch.cuda.max_memory_allocated())}
        if self.device == "mps":
            return {"device_peak_bytes": int(self.torch.mps.driver_allocated_memory())}
        return {}  # CPU: the harness reports RSS growth instead

    def step_logits(self, pixels, ids: list[int]):
        """Teacher-forced logits (len(ids), vocab) for one image, for the margin at a divergence."""
        with self.torch.no_grad():
            out = self.model(pixel_values=pixels, decoder_input_ids=self.torch.tensor([ids], device=self.device))
        return out.logits[0].float().cpu().numpy()

    def facts(self) -> dict:
        torch = self.torch
        config = torch.__config__.show()
        blas = next((line.split("=", 1)[1] for line in config.splitlines() if "BLAS_INFO=" in line), "unknown")
        return {
            "torch_version": torch.__version__,
            "device": self.device,
            "blas": blas.split(",")[0],
            "threads": torch.get_num_threads(),
            "processor": platform.processor(),
        }
