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


def test_old_module_paths_and_pickles_still_load():
    """The paths of before the layers name the same modules (one object each), so old imports,
    patches and pickles of results keep working."""
    import pickle

    import mlx_mangaocr
    import mlx_mangaocr.dropin
    from mlx_mangaocr.frontends import dropin
    from mlx_mangaocr.pipelines.ocr import Recognition

    assert mlx_mangaocr.dropin is dropin  # patching mlx_mangaocr.dropin.post_process patches the drop-in
    from mlx_mangaocr.detection import Detection, Detector, load_detector  # noqa: F401
    from mlx_mangaocr.ocr.processor import MangaOcrProcessor
    from mlx_mangaocr.pages.volume import Volume

    assert MangaOcrProcessor is mlx_mangaocr.MangaOcrProcessor and Volume.__module__.endswith("volumes.volume")
    old = pickle.dumps(Recognition("a", [2, 3], 0.5)).replace(
        b"mlx_mangaocr.pipelines.ocr", b"mlx_mangaocr.ocr.processor"
    )
    assert pickle.loads(old) == Recognition("a", [2, 3], 0.5)


def test_public_names_load_from_many_threads_at_once():
    """The public names are imported on first use; two threads asking at once must not deadlock on
    the module locks (run in a fresh process, where nothing is imported yet)."""
    script = (
        "import threading, mlx_mangaocr\n"
        "errors = []\n"
        "def get(name):\n"
        "    try:\n"
        "        getattr(mlx_mangaocr, name)\n"
        "    except Exception as e:\n"
        "        errors.append(repr(e))\n"
        "names = ['Page', 'load_page_reader', 'Block', 'PageReader', 'MangaOcr', 'load_ocr', 'Detection']\n"
        "threads = [threading.Thread(target=get, args=(n,)) for n in names * 2]\n"
        "[t.start() for t in threads]\n"
        "[t.join() for t in threads]\n"
        "print(errors)\n"
    )
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                              env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})  # fmt: skip
        assert done.stdout.strip() == "[]", done.stdout + done.stderr
