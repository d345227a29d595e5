"""The wheel: it installs ``mlx_mangaocr`` only (no top-level ``convert`` to collide with other
projects), with both console scripts, and the checkout's ``python -m convert`` still works."""

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
WHERE = "import mlx_mangaocr, importlib.util as u; print(mlx_mangaocr.__file__, u.find_spec('convert'))"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source") / "mlx-mangaocr"  # a copy: setuptools writes build/ where it builds
    skip = shutil.ignore_patterns(".venv", ".git", "build", "*.egg-info", "__pycache__", "results", ".*_cache")
    shutil.copytree(REPO, source, ignore=skip)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (path,) = out.glob("mlx_mangaocr-*.whl")
    return path


def test_wheel_holds_only_the_library_and_its_entry_points(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    dist_info = next(t for t in top if t.endswith(".dist-info"))
    assert top == {"mlx_mangaocr", dist_info}, top
    assert "mlx_mangaocr/convert.py" in names
    sources = {p.relative_to(REPO).as_posix() for p in (REPO / "mlx_mangaocr").rglob("*.py")}
    assert sources - set(names) == set()  # every module, every layer's subpackages included
    shipped = {n for n in names if n.startswith("mlx_mangaocr/") and n.endswith(".py")}
    assert shipped - sources == set()  # nothing stale (a build/ folder left by an older layout)
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "mlx-mangaocr = mlx_mangaocr.frontends.cli:main" in entry_points
    assert "mlx-mangaocr-convert = mlx_mangaocr.frontends.convert:main" in entry_points
    assert not any(n.startswith(("testing/", "benchmarks/", "tests/")) for n in names)  # checkout-only
    assets = {f"mlx_mangaocr/pipelines/synth/assets/{n}" for n in ("vocab.csv", "len_to_p.csv", "NOTICE")}
    assert assets <= set(names)  # synth's data ships with it


def test_installed_entry_points_run(wheel, tiny, tmp_path):
    """Install the wheel into a folder of its own and run its two scripts from outside the repo."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert not (target / "convert").exists()
    env = dict(os.environ, PYTHONPATH=str(target))  # ahead of the editable checkout
    where = subprocess.run(
        [sys.executable, "-c", WHERE],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert where[0].startswith(str(target)) and where[1] == "None"
    out = tmp_path / "converted"
    run = subprocess.run(
        [str(target / "bin" / "mlx-mangaocr-convert"), str(tiny.folder), "-o", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (out / "model.safetensors").is_file() and run.stdout.strip() == str(out)
    ocr = subprocess.run(
        [str(target / "bin" / "mlx-mangaocr"), "--model", str(out), str(REPO / "assets" / "example.jpg")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ocr.returncode == 0, ocr.stderr
    assert ocr.stdout.strip()


def test_checkout_convert_command_still_works(tiny, tmp_path):
    out = tmp_path / "converted"
    run = subprocess.run(
        [sys.executable, "-m", "convert", str(tiny.folder), "-o", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (out / "model.safetensors").is_file()
    usage = subprocess.run([sys.executable, "-m", "convert", "--help"], cwd=REPO, capture_output=True, text=True)
    assert usage.stdout.startswith("usage: python -m convert")
