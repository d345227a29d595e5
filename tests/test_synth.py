"""``mlx-mangaocr synth``: determinism, vertical forms, tate-chū-yoko, furigana kept out of the
labels, labels within the vocabulary and drawn by the recorded font, bad input, and augment().

These need a Japanese font on the system (CI installs fonts-ipaexfont); without one they fail and
say so."""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFont

from mlx_mangaocr.frontends.cli import synth as synth_cli
from mlx_mangaocr.pipelines import augment as aug
from mlx_mangaocr.pipelines.synth import Synthesizer, fonts, generate
from mlx_mangaocr.pipelines.synth.charsets import default_vocab
from mlx_mangaocr.pipelines.synth.fonts import FontCache, find_fonts, has_raqm, notdef_mask, renders
from mlx_mangaocr.pipelines.synth.layout import Segment, label_of
from mlx_mangaocr.pipelines.synth.render import Style, TextRenderer

COUNT = 40
SIZE = 48


@pytest.fixture(scope="module")
def face():
    try:
        return find_fonts()[0]
    except Exception as e:  # no skip: CI installs the fonts, so a missing one is a failure to see
        pytest.fail(f"no Japanese font for the synth tests ({e})")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """The same set written with 1 and with 2 threads."""
    one, two = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("two")
    records = generate(one, COUNT, Synthesizer(seed=11), workers=1)
    generate(two, COUNT, Synthesizer(seed=11), workers=2)
    return one, two, records


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask > 96)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def test_same_seed_same_bytes_at_any_thread_count_and_order(made):
    one, two, records = made
    assert (one / "labels.jsonl").read_bytes() == (two / "labels.jsonl").read_bytes()
    names = sorted(p.name for p in (one / "images").iterdir())
    assert names == [f"{i:06d}.png" for i in range(COUNT)]
    for name in names:
        assert (one / "images" / name).read_bytes() == (two / "images" / name).read_bytes(), name
    # samples made alone, last first, by a fresh generator: the same images
    again = Synthesizer(seed=11)
    for i in reversed(range(0, COUNT, 7)):
        buffer = io.BytesIO()
        again.sample(i).image.save(buffer, format="PNG")
        assert buffer.getvalue() == (one / "images" / f"{i:06d}.png").read_bytes(), i
    other = Synthesizer(seed=12).sample(0).image
    assert other.tobytes() != Image.open(one / "images/000000.png").tobytes()


def test_records_images_and_labels(made):
    one, _, records = made
    lines = (one / "labels.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == records
    vocab = default_vocab()
    notdefs = {}
    for r in records:
        with Image.open(one / r["image"]) as im:
            assert im.mode == "L" and max(im.size) <= 600 and (im.width, im.height) == (r["width"], r["height"])
        assert r["text"] and r["text"] == "".join(r["lines"])
        assert set(r["text"]) <= vocab
        key = (r["font"], r["font_index"])
        if key not in notdefs:
            font = ImageFont.truetype(r["font"], 32, index=r["font_index"], layout_engine=ImageFont.Layout.BASIC)
            notdefs[key] = (font, notdef_mask(font))
        font, notdef = notdefs[key]
        missing = [c for c in r["text"] if not renders(font, c, notdef)]
        assert not missing, f"{r['image']}: {missing} not drawn by {r['font']}"
        assert "DejaVu" not in r["font"]
    assert any(r["furigana"] for r in records) and any(r["tcy"] for r in records)
    assert any(r["bubble"] for r in records) and any(r["inverted"] for r in records)
    assert any(r["outline"] for r in records)
    # 70% vertical: Binomial(40, 0.7) has mean 28 and sd 2.9; 4 sd either side
    assert 16 <= sum(r["vertical"] for r in records) <= 38


def test_plain_is_black_text_on_white(tmp_path, capsys):
    """``--plain``: no bubble, outline, shadow, background or furigana; the text is the only ink
    (the margins are white) and the label is what is drawn."""
    from mlx_mangaocr.frontends.cli import main as cli

    out = tmp_path / "plain"
    assert cli(["synth", str(out), "--count", "12", "--seed", "5", "--plain", "--no-progress"]) == 0
    records = [json.loads(x) for x in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    assert json.loads((out / "synth.json").read_text())["plain"] is True
    for r in records:
        assert (r["bubble"], r["outline"], r["shadow"], r["inverted"], r["furigana"]) == (None, 0, 0, False, [])
        pixels = np.asarray(Image.open(out / r["image"]).convert("L"))
        assert (pixels[:2] == 255).all() and (pixels[-2:] == 255).all(), r["image"]  # white margins
        assert (pixels[:, :2] == 255).all() and (pixels[:, -2:] == 255).all(), r["image"]
        assert pixels.min() < 64, r["image"]  # dark text
        assert r["text"] == "".join(r["lines"])
    assert cli(["synth", str(tmp_path / "x"), "--count", "1", "--plain", "--backgrounds", str(tmp_path)]) == 2
    assert "--plain draws on white: it takes no --backgrounds" in capsys.readouterr().err


def test_vertical_share_follows_the_option():
    assert not any(Synthesizer(seed=3, vertical_p=0.0).sample(i).record["vertical"] for i in range(4))
    assert all(Synthesizer(seed=3, vertical_p=1.0).sample(i).record["vertical"] for i in range(4))


@pytest.mark.parametrize("vert_feature", [True, False], ids=["font-vert", "turned"])
def test_vertical_forms(face, vert_feature):
    if vert_feature and not has_raqm():
        pytest.fail("Pillow has no raqm here: the font's vertical forms cannot be tested")
    r = TextRenderer(FontCache(), has_raqm(), vert_feature)
    pad = SIZE // 2

    def cell(char: str, vertical: bool) -> np.ndarray:
        g = r.glyph(face, SIZE, char, vertical)
        return g.mask[pad : pad + SIZE, pad : pad + SIZE]

    x0, y0, x1, y1 = _bbox(cell("ー", True))
    assert y1 - y0 > 3 * (x1 - x0), "ー is a vertical bar in vertical text"
    x0, y0, x1, y1 = _bbox(cell("ー", False))
    assert x1 - x0 > 3 * (y1 - y0)
    for mark in "。、":
        ys, xs = np.nonzero(cell(mark, True) > 96)
        assert xs.mean() > SIZE / 2 and ys.mean() < SIZE / 2, f"{mark} sits in the upper right of its cell"
        ys, xs = np.nonzero(cell(mark, False) > 96)
        assert xs.mean() < SIZE / 2 and ys.mean() > SIZE / 2
    for bracket in "「」（）『』":
        x0, y0, x1, y1 = _bbox(cell(bracket, False))
        assert y1 - y0 > x1 - x0
        x0, y0, x1, y1 = _bbox(cell(bracket, True))
        assert x1 - x0 > y1 - y0, f"{bracket} turned in vertical text"
    # 「 opens downward in vertical text: its ink is at the top and the right of its cell
    ys, xs = np.nonzero(cell("「", True) > 96)
    assert ys.mean() > SIZE * 0.5 and xs.mean() > SIZE * 0.45
    # a vertical line is a column, a horizontal one a row
    line = [[Segment("char", c) for c in "「あー。」"]]
    v = r.render(face, line, Style(SIZE, vertical=True, line_gap=0.5))
    h = r.render(face, line, Style(SIZE, vertical=False, line_gap=0.5))
    assert v.shape[0] > 3 * v.shape[1] and h.shape[1] > 3 * h.shape[0]


def test_tate_chu_yoko_takes_one_cell(face):
    r = TextRenderer(FontCache(), has_raqm())
    style = Style(SIZE, vertical=True)
    tcy = r.render(face, [[Segment("char", "あ"), Segment("tcy", "10"), Segment("char", "い")]], style)
    upright = r.render(face, [[Segment("char", "あ"), Segment("latin", "10"), Segment("char", "い")]], style)
    assert abs(upright.shape[0] - tcy.shape[0] - SIZE) <= 2, "the run takes one cell, not one per character"
    assert tcy.shape[0] < 3 * SIZE
    # the middle cell holds 1 and 0 side by side: two ink runs across, one row of cells down
    middle = tcy[int(SIZE * 1.15) : int(SIZE * 1.85)]
    across = (middle > 96).any(axis=0).astype(int)
    runs = int(np.sum(np.diff(np.concatenate([[0], across, [0]])) == 1))
    assert runs == 2
    down = (middle > 96).any(axis=1).astype(int)
    assert int(np.sum(np.diff(np.concatenate([[0], down, [0]])) == 1)) == 1


def test_furigana_is_drawn_but_not_labelled(face):
    r = TextRenderer(FontCache(), has_raqm())
    style = Style(SIZE, vertical=True)
    with_ruby = [[Segment("ruby", "漢字", "か")]]
    plain = [[Segment("char", "漢"), Segment("char", "字")]]
    assert label_of(with_ruby) == label_of(plain) == "漢字"
    a = r.render(face, plain, style)
    b = r.render(face, with_ruby, style)
    assert b.shape[1] > a.shape[1] + SIZE // 4, "the furigana lie beside the column"
    assert np.array_equal(b[: a.shape[0], : a.shape[1]], a), "the main text's ink is the label's alone"
    assert b[:, a.shape[1] :].any()


def test_model_vocab_restricts_labels(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    chars = "あいうえおかきくけこ漢字！？1"
    (model / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars]) + "\n")
    out = tmp_path / "out"
    assert synth_cli.main([str(out), "--count", "12", "--seed", "4", "--model", str(model)]) == 0
    records = [json.loads(line) for line in (out / "labels.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(records) == 12
    for r in records:
        assert r["text"] and set(r["text"]) <= set(chars), r["text"]


def test_preview_and_rerun(tmp_path):
    out = tmp_path / "out"
    assert synth_cli.main([str(out), "--count", "3", "--preview", "--workers", "1"]) == 0
    with Image.open(out / "preview.png") as im:
        assert im.format == "PNG" and im.width > 200
    # a previous synth output is replaced, no --force needed; fewer samples leave no stale images
    assert synth_cli.main([str(out), "--count", "2"]) == 0
    assert sorted(p.name for p in (out / "images").iterdir()) == ["000000.png", "000001.png"]
    assert not (out / "preview.png").exists()


def _fails(argv, capsys, *words) -> None:
    assert synth_cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err


def test_bad_input(tmp_path, capsys, monkeypatch):
    file = tmp_path / "file.txt"
    file.write_text("x")
    out = str(tmp_path / "out")
    _fails([str(file), "--count", "1"], capsys, "a file")
    _fails([out, "--count", "0"], capsys, "--count")
    empty = tmp_path / "empty"
    empty.mkdir()
    latin = tmp_path / "latin"
    latin.mkdir()
    dejavu = sorted(Path("/usr/share/fonts").rglob("DejaVuSans.ttf"))
    if dejavu:
        shutil.copy(dejavu[0], latin)
    _fails([out, "--count", "1", "--fonts", str(latin)], capsys, "--fonts", "no font")
    _fails([out, "--count", "1", "--fonts", str(tmp_path / "nowhere")], capsys, "not a folder")
    _fails([out, "--count", "1", "--corpus", str(tmp_path / "missing.txt")], capsys, "--corpus", "no such file")
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"\xff\xfe\x00abc\x81")
    _fails([out, "--count", "1", "--corpus", str(bad)], capsys, "--corpus", "not UTF-8")
    nothing = tmp_path / "nothing.txt"
    nothing.write_text("\n  \n\U0001f600\n", encoding="utf-8")
    _fails([out, "--count", "1", "--corpus", str(nothing)], capsys, "--corpus", "empty after filtering")
    _fails([out, "--count", "1", "--backgrounds", str(empty)], capsys, "--backgrounds", "no image")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _fails([str(foreign), "--count", "1"], capsys, "not a synth output", "--force")
    assert synth_cli.main([str(foreign), "--count", "1", "--force"]) == 0
    assert (foreign / "notes.txt").read_text() == "mine" and (foreign / "labels.jsonl").is_file()
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "wordfreq", None)  # import wordfreq raises ImportError
    _fails([out, "--count", "1"], capsys, "pip install 'mlx-mangaocr[train]'", "--corpus")
    monkeypatch.setattr(fonts, "system_font_dirs", lambda: [empty])
    _fails([out, "--count", "1"], capsys, "no Japanese font", "fonts-ipaexfont", "--fonts")
    assert not Path(out).exists() or not (Path(out) / "labels.jsonl").exists()


def _page(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    a = np.full((96, 160), 235, np.uint8)
    a[20:70, 30:130] = rng.integers(0, 60, size=(50, 100))  # dark "text" on light paper
    return Image.fromarray(a)


@pytest.mark.parametrize("name", sorted(aug.TRANSFORMS))
def test_each_transform_changes_the_image(name):
    image = _page()
    strength = dict((n, s) for n, _, s in aug.MIXES["heavy"])[name]
    out = aug.TRANSFORMS[name](image, np.random.default_rng(5), strength)
    assert out.mode == "L" and out.size == image.size
    assert out.tobytes() != image.tobytes()
    again = aug.TRANSFORMS[name](image, np.random.default_rng(5), strength)
    assert again.tobytes() == out.tobytes()


def test_augment_is_deterministic_and_mixes_as_upstream():
    image = _page(1)
    outs = [aug.augment(image, np.random.default_rng([7, i])) for i in range(60)]
    again = [aug.augment(image, np.random.default_rng([7, i])) for i in range(60)]
    for a, b in zip(outs, again, strict=True):
        assert a.tobytes() == b.tobytes() and a.size == image.size and a.mode == "L"
    changed = sum(a.tobytes() != image.tobytes() for a in outs)
    assert 25 <= changed < 60  # none 18%, and a medium mix leaves the image alone 11% of the time: ~73% change
    assert abs(sum(aug.MIX_P.values()) - 1) < 1e-9 and aug.MIX_P["none"] == 0.18
    with pytest.raises(ValueError, match="policy"):
        aug.augment(image, np.random.default_rng(0), policy="other")


def test_a_run_never_replaces_what_it_did_not_make(tmp_path, capsys, monkeypatch):
    """Only a folder whose synth.json says it is a synth output is replaced, and only once the new
    set is whole; inputs inside OUT, odd seeds, FIFOs and font-folder loops are refused or survived."""
    # labels and images of someone else's, with the names synth writes: refused even with --force
    theirs = tmp_path / "theirs"
    (theirs / "images").mkdir(parents=True)
    (theirs / "images" / "000005.png").write_bytes(b"mine")
    (theirs / "labels.jsonl").write_text('{"image": "x.png", "text": "mine"}\n', encoding="utf-8")
    _fails([str(theirs), "--count", "1"], capsys, "not a synth output")
    _fails([str(theirs), "--count", "1", "--force"], capsys, "images", "not a synth output's")
    assert (theirs / "images" / "000005.png").read_bytes() == b"mine"
    assert "mine" in (theirs / "labels.jsonl").read_text()

    out = tmp_path / "out"
    assert synth_cli.main([str(out), "--count", "3", "--workers", "1"]) == 0
    before = {p.name: p.read_bytes() for p in (out / "images").iterdir()}
    labels = (out / "labels.jsonl").read_bytes()
    # a run that fails part-way (a sample raising) leaves the earlier set as it was
    real = Synthesizer.sample

    def broken(self, index):
        if index == 2:
            raise KeyboardInterrupt
        return real(self, index)

    monkeypatch.setattr(Synthesizer, "sample", broken)
    assert synth_cli.main([str(out), "--count", "5", "--seed", "9", "--workers", "1"]) == 130
    monkeypatch.setattr(Synthesizer, "sample", real)
    assert {p.name: p.read_bytes() for p in (out / "images").iterdir()} == before
    assert (out / "labels.jsonl").read_bytes() == labels
    assert "is as it was" in capsys.readouterr().err
    # inputs inside what a run replaces are refused before anything is touched
    _fails([str(out), "--count", "1", "--backgrounds", str(out / "images")], capsys, "lies in OUT")
    _fails([str(out), "--count", "1", "--corpus", str(out / "labels.jsonl")], capsys, "lies in OUT")
    assert (out / "labels.jsonl").read_bytes() == labels
    with pytest.raises(SystemExit):  # argparse: must be 0 or more
        synth_cli.main([str(tmp_path / "neg"), "--count", "1", "--seed", "-1"])
    assert "--seed: must be 0 or more" in capsys.readouterr().err
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    _fails([str(tmp_path / "f"), "--count", "1", "--corpus", str(fifo)], capsys, "--corpus", "not a regular file")
    loops = tmp_path / "loops"
    loops.mkdir()
    for name in ("a", "b", "c"):
        (loops / name).symlink_to(".")
    os.symlink(sorted(fonts.font_files(fonts.system_font_dirs()))[0], loops / "f.ttf")
    assert len(fonts.font_files([loops])) == 1  # each real folder walked once
    vocab = tmp_path / "vm"
    vocab.mkdir()
    (vocab / "vocab.txt").write_text("[PAD]\n\U0001f600\n", encoding="utf-8")
    _fails([str(tmp_path / "v"), "--count", "1", "--model", str(vocab)], capsys, "no font draws any character")
    bomb = tmp_path / "bomb"
    bomb.mkdir()
    Image.new("L", (300, 300)).save(bomb / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)
    _fails([str(tmp_path / "b"), "--count", "1", "--backgrounds", str(bomb)], capsys, "big.png", "decompression")
