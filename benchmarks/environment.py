"""Machine facts and the install footprint of each side's runtime dependencies."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from importlib import metadata

# Runtime requirements: this library's, and upstream manga-ocr's model path (torch + transformers).
MLX_RUNTIME = ["mlx", "numpy", "pillow", "jaconv", "safetensors", "huggingface-hub"]
TORCH_RUNTIME = ["torch", "transformers", "numpy", "pillow", "jaconv", "fugashi", "unidic-lite"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_names(dist: metadata.Distribution) -> list[str]:
    """Names of what ``dist`` needs on this platform, without optional extras."""
    from packaging.requirements import Requirement

    names = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            names.append(req.name)
    return names


def closure(roots: list[str]) -> dict[str, int]:
    """Installed size in bytes of every distribution in the dependency closure of ``roots``.

    An extra that a root is installed with (e.g. mlx[cpu] -> mlx-cpu) is followed when installed.
    """
    seen: dict[str, int] = {}
    todo = list(roots)
    if "mlx" in roots:
        todo += [n for n in ("mlx-cpu", "mlx-metal", "mlx-cuda") if _installed(n)]
    while todo:
        name = _norm(todo.pop())
        if name in seen or not _installed(name):
            continue
        dist = metadata.distribution(name)
        size = 0
        for file in dist.files or []:
            try:
                size += os.path.getsize(file.locate())
            except OSError:
                pass
        seen[name] = size
        todo.extend(_requirement_names(dist))
    return seen


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def footprint() -> dict:
    out = {}
    for side, roots in (("mlx", MLX_RUNTIME), ("torch", TORCH_RUNTIME)):
        sizes = closure(roots)
        out[side] = {"bytes": sum(sizes.values()), "packages": sizes}
    return out


def cpu_name() -> str:
    if sys.platform == "darwin":
        try:
            return subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    memory = None
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        pass
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
