"""``mlx_mangaocr.MangaOcr`` and the ``manga_ocr`` alias against the real upstream package
(manga-ocr 0.1.16, in the test extras): same strings, same call patterns as the tools that embed it."""

import inspect
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import manga_ocr
import manga_ocr.ocr as upstream_ocr
import mlx.core as mx
import numpy as np
import pytest
from PIL import Image

import mlx_mangaocr
from mlx_mangaocr import InvalidImageError, MangaOcr
from testing.synthetic import IMAGES

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def full_pair(full):
    """Upstream's MangaOcr and ours on the same full-size checkpoint (both warm up in __init__)."""
    return manga_ocr.MangaOcr(str(full.folder), True), MangaOcr(str(full.folder), True)


@pytest.fixture(scope="module")
def tiny_upstream(tiny):
    return manga_ocr.MangaOcr(pretrained_model_name_or_path=str(tiny.folder), force_cpu=True)


@pytest.fixture(scope="module")
def tiny_mocr(tiny):
    return MangaOcr(pretrained_model_name_or_path=str(tiny.folder))


def _modes(path):
    """The PIL images tools pass: modes L, RGB, RGBA and P, and mokuro's RGB image of a BGR array."""
    rgb = Image.open(path).convert("RGB")
    yield "L", rgb.convert("L")
    yield "RGB", rgb
    yield "RGBA", rgb.convert("RGBA")
    yield "P", rgb.convert("P")
    yield "BGR", Image.fromarray(np.asarray(rgb)[:, :, ::-1].copy())  # mokuro: Image.fromarray(bgr_crop)


def test_full_size_strings_equal_upstream_for_paths_and_pil_modes(full_pair):
    upstream, ours = full_pair
    for path in IMAGES:
        assert ours(str(path)) == upstream(str(path)), path.name
    # Images whose text is short on this checkpoint: five of the others run beam search to 300 tokens.
    for path in (IMAGES[0], IMAGES[2]):
        assert ours(path) == upstream(path), path.name  # a Path, as upstream accepts
        for mode, image in _modes(path):
            assert ours(image) == upstream(image), f"{path.name} {mode}"


def test_constructor_is_upstreams(tiny, tiny_mocr):
    import inspect

    def params(cls):
        return [(p.name, p.kind, p.default) for p in inspect.signature(cls).parameters.values()]

    assert params(MangaOcr) == params(manga_ocr.MangaOcr)  # names, order, defaults
    positional = MangaOcr(str(tiny.folder), True)  # mokuro: MangaOcr(path, force_cpu)
    assert positional.ocr.device == mx.cpu and tiny_mocr.ocr.device is None
    assert positional(IMAGES[3]) == tiny_mocr(IMAGES[3])


def test_more_inputs_than_upstream_and_its_errors(tiny_mocr, tiny_upstream):
    path = IMAGES[4]
    expected = tiny_upstream(path)
    assert tiny_mocr(path.read_bytes()) == expected
    assert tiny_mocr(np.asarray(Image.open(path))) == expected
    with pytest.raises(ValueError):  # upstream raises ValueError for an unsupported input too
        tiny_upstream(123)
    with pytest.raises(InvalidImageError, match="unsupported image input of type int"):
        tiny_mocr(123)
    with pytest.raises(InvalidImageError, match="image file not found"):
        tiny_mocr("no-such-file.png")


def test_attributes_have_an_mlx_meaning_or_say_what_to_use(tiny_mocr):
    import mlx.nn as nn

    assert isinstance(tiny_mocr.model, nn.Module)
    pixels = tiny_mocr.processor(IMAGES[0])
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.float32
    ids = tiny_mocr.ocr.generate_ids([IMAGES[0]], max_length=300)[0]
    assert mlx_mangaocr.post_process(tiny_mocr.tokenizer.decode(ids)) == tiny_mocr(IMAGES[0])
    with pytest.raises(AttributeError, match=r"no attribute '_preprocess': mocr.processor\(image\)"):
        tiny_mocr._preprocess(Image.open(IMAGES[0]))
    with pytest.raises(AttributeError, match="no attribute 'cuda': its MLX parts are .model, .processor"):
        tiny_mocr.cuda()


def test_shared_by_threads_with_rgba_images(tiny_mocr):
    """owocr: one instance, PIL images of any mode, several threads."""
    images = [Image.open(p).convert("RGBA") for p in IMAGES[:6]]
    expected = [tiny_mocr(im) for im in images]
    results: dict[int, str] = {}

    def work(i):
        results[i] = tiny_mocr(images[i % len(images)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [results[i] for i in range(12)] == [expected[i % 6] for i in range(12)]


def test_default_model_is_the_converted_default(tiny, tmp_path, monkeypatch):
    """MangaOcr() (manga-image-translator, Poricom) loads the converted default model."""
    from mlx_mangaocr.frontends.convert import convert
    from mlx_mangaocr.loading import registry

    folder = convert(str(tiny.folder), tmp_path / "default")
    monkeypatch.setattr(registry, "converted_folder", lambda *args: folder)
    assert MangaOcr().ocr.checkpoint.source == folder


GSM_LIKE = """
import sys
import manga_ocr.ocr

def my_post_process(text):
    return "<<" + text + ">>"

manga_ocr.ocr.post_process = my_post_process  # as GameSentenceMiner does, before building the model
from manga_ocr import MangaOcr

mocr = MangaOcr(sys.argv[1])
print(type(mocr).__module__)
print(mocr(sys.argv[2]))
sys.exit(3)
"""

NOT_INSTALLED = """
import sys

class NoMangaOcr:  # as if manga-ocr were not installed
    def find_spec(self, name, path=None, target=None):
        if name == "manga_ocr" or name.startswith("manga_ocr."):
            raise ModuleNotFoundError(name)

sys.meta_path.insert(0, NoMangaOcr())
"""


@pytest.mark.parametrize("how", ["console script", "python -m", "not installed"])
def test_alias_command_runs_an_unmodified_script(how, tiny, tiny_upstream, tmp_path, monkeypatch):
    script = tmp_path / "tool.py"
    script.write_text(GSM_LIKE)
    command = [str(BIN / "mlx-mangaocr-as-manga-ocr")]
    if how == "python -m":
        command = [sys.executable, "-m", "mlx_mangaocr.compat"]
    elif how == "not installed":
        launcher = f"{NOT_INSTALLED}\nfrom mlx_mangaocr.compat import main\nmain()"
        command = [sys.executable, "-c", launcher]
    run = subprocess.run(
        [*command, str(script), str(tiny.folder), str(IMAGES[5])], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 3, run.stderr
    module, text = run.stdout.splitlines()
    assert module == "mlx_mangaocr.frontends.dropin"  # the front-end layer (mlx_mangaocr.dropin re-exports it)
    monkeypatch.setattr(upstream_ocr, "post_process", lambda text: "<<" + text + ">>")  # upstream, replaced alike
    assert text == tiny_upstream(IMAGES[5])
    assert "torch" not in run.stderr


def test_alias_in_process_and_its_errors(tiny, monkeypatch):
    from mlx_mangaocr.frontends import compat, dropin

    saved = {n: m for n, m in sys.modules.items() if n == "manga_ocr" or n.startswith("manga_ocr.")}
    inspect.stack()  # inspect maps each module in sys.modules to its file: the real manga_ocr's here
    try:
        package = compat.install()
        assert compat.install() is package  # idempotent
        inspect.stack()  # and must not fail on the alias that replaced it (wordfreq calls it on import)
        import manga_ocr as aliased
        import manga_ocr.ocr

        assert aliased.MangaOcr is MangaOcr and manga_ocr.ocr is dropin
        assert aliased.__version__ == "0.1.16"  # the real package's, which is installed here
        monkeypatch.setattr(manga_ocr.ocr, "post_process", lambda text: "replaced")
        assert MangaOcr(str(tiny.folder))(IMAGES[0]) == "replaced"
    finally:
        for name in [n for n in sys.modules if n == "manga_ocr" or n.startswith("manga_ocr.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert compat.run(["no-such-command-here"]) == 2
    assert compat.run(["-m"]) == 2
    assert compat.run([]) == 2


def test_upstream_cli_folder_mode_through_the_alias(tiny, tiny_upstream, tmp_path):
    """manga-ocr's own `manga_ocr` command, watching a folder, OCRs a new image with the MLX class."""
    watched, out = tmp_path / "watched", tmp_path / "out.txt"
    watched.mkdir()
    command = [
        str(BIN / "mlx-mangaocr-as-manga-ocr"), "manga_ocr", "--read_from", str(watched), "--write_to", str(out),
        "--pretrained_model_name_or_path", str(tiny.folder), "--force_cpu",
    ]  # fmt: skip
    log = tmp_path / "log.txt"
    with log.open("w") as err:
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 120
        while "Reading from directory" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
        shutil.copy(IMAGES[6], watched / "new.jpg")
        while not (out.is_file() and out.read_text().endswith("\n")) and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait()
    assert out.read_text() == tiny_upstream(IMAGES[6]) + "\n", log.read_text()
    assert "Using CPU" not in log.read_text()  # upstream's own __init__ (torch) never ran
