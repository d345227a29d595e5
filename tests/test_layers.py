"""The package's layers (README: Layout): ``import-linter`` contracts in ``pyproject.toml`` hold, and
they fail when a lower layer imports a higher one (a deliberate back-import in a copy)."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the package under ``root`` with the project's contracts."""
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run([str(LINT), str(root / "pyproject.toml"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def test_the_layers_hold():
    done = lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "BROKEN" not in done.stdout and done.stdout.count("KEPT") == 4  # layers, no front end, independent, acyclic


def test_a_back_import_breaks_them(tmp_path):
    shutil.copytree(ROOT / "mlx_mangaocr", tmp_path / "mlx_mangaocr", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "mlx_mangaocr" / "engine" / "shortcut.py").write_text(
        '"""A module that reaches up."""\n\nfrom ..frontends.cli.common import Progress  # noqa: F401\n'
    )
    done = lint(tmp_path)
    assert done.returncode != 0
    assert "mlx_mangaocr.engine.shortcut -> mlx_mangaocr.frontends.cli.common" in done.stdout
    assert "BROKEN" in done.stdout
