"""``mlx-mangaocr bench ARGS``: the benchmark harness (MLX against PyTorch, ``benchmarks/``), which
lives in a checkout of the repository, not in the installed package."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from .common import error

CHECKOUT = Path(__file__).resolve().parents[3]  # mlx_mangaocr/frontends/cli/bench.py -> the repository


def main(argv: list[str]) -> int:
    project = CHECKOUT / "pyproject.toml"
    is_checkout = (CHECKOUT / "benchmarks" / "__main__.py").is_file() and project.is_file()
    if not (is_checkout and 'name = "mlx-mangaocr"' in project.read_text(encoding="utf-8", errors="replace")):
        error("bench runs the benchmark harness of a checkout (benchmarks/ is not installed with the package): "
              "git clone the repository, ./setup_mlx.sh --dev, then .venv/bin/mlx-mangaocr bench")  # fmt: skip
        return 2
    missing = [name for name in ("torch", "transformers") if importlib.util.find_spec(name) is None]
    if missing:
        error(f"bench compares MLX with PyTorch and needs {' and '.join(missing)}: run ./setup_mlx.sh --dev")
        return 2
    if str(CHECKOUT) not in sys.path:
        sys.path.insert(0, str(CHECKOUT))
    from benchmarks.__main__ import main as bench_main

    return bench_main(argv, prog="mlx-mangaocr bench")
