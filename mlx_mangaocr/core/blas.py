"""Load OpenBLAS before MLX on Linux.

The ``mlx-cpu`` wheel links the reference BLAS, whose fp32 GEMM is tens of times slower than
OpenBLAS. Loading OpenBLAS with ``RTLD_GLOBAL`` before MLX makes MLX's BLAS calls resolve to it.
Set ``MLX_MANGAOCR_NO_OPENBLAS=1`` to opt out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger("mlx_mangaocr")

_CANDIDATES = (
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)

loaded_blas: str | None = None


def load_openblas() -> str | None:
    """Load OpenBLAS globally if on Linux, not opted out, and MLX not yet imported; return its path."""
    global loaded_blas
    if loaded_blas or not sys.platform.startswith("linux") or os.environ.get("MLX_MANGAOCR_NO_OPENBLAS"):
        return loaded_blas
    if "mlx.core" in sys.modules:
        log.warning(
            "mlx was imported before mlx_mangaocr, too late to load OpenBLAS: CPU matmuls use MLX's slow "
            "reference BLAS. Import mlx_mangaocr first (or set MLX_MANGAOCR_NO_OPENBLAS=1 to silence this)."
        )
        return None
    found = ctypes.util.find_library("openblas")
    for path in ([found] if found else []) + list(_CANDIDATES):
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        loaded_blas = path
        log.info("loaded OpenBLAS for MLX's CPU backend: %s", path)
        return path
    log.info("OpenBLAS not found: MLX's CPU matmuls use its bundled reference BLAS (slow)")
    return None
