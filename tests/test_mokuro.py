"""Volumes to ``.mokuro`` and whole pages from the command line: the format's fields, page order,
uuids, bad pages, archives, resume after a kill, ``--pages`` output and ``--draw``.

mokuro itself cannot be installed beside the reference stack (mokuro 0.2.5 requires torchvision,
which moves transformers' image processors off the PIL path every oracle here uses), so the format
is checked against mokuro 0.2.x's field list (the issue's, and mokuro-reader's types) field by field.
"""

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from mlx_mangaocr.frontends.cli import main
from mlx_mangaocr.pipelines.volumes.volume import Volume, VolumeError, natural_key
from testing.pages import make_page

TOP = {"version", "title", "title_uuid", "volume", "volume_uuid", "pages"}
PAGE = {"version", "img_width", "img_height", "blocks", "img_path"}
BLOCK = {"box", "vertical", "font_size", "lines_coords", "lines"}


@pytest.fixture(scope="module")
def models(tiny, small_detector):
    return ["--model", str(tiny.folder), "--detector", str(small_detector.folder), "--decoding", "greedy"]


@pytest.fixture(scope="module")
def reader(tiny_processor, small_detector):
    from mlx_mangaocr import PageReader

    return PageReader(tiny_processor, small_detector.detector, decoding={"num_beams": 1})


def make_volume(folder, count=4, start=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        make_page(start + i, width=600, height=840).image.save(folder / f"page{start + i}.png")
    return folder


def test_volume_pages_natural_order_recursive_and_filtered(tmp_path):
    vol = tmp_path / "vol"
    (vol / "part2").mkdir(parents=True)
    for name in ["10.jpg", "2.PNG", "1.webp", "part2/3.avif", "notes.txt", "cover.bmp", "x.jpeg"]:
        (vol / name).write_bytes(b"x")
    # one suffix set for pages and crops (core.images.IMAGE_SUFFIXES): .bmp pages count too
    assert Volume.open(vol).pages == ["1.webp", "2.PNG", "10.jpg", "cover.bmp", "part2/3.avif", "x.jpeg"]
    assert sorted(["p10", "p2", "p1"], key=natural_key) == ["p1", "p2", "p10"]
    archive = tmp_path / "vol.cbz"
    with zipfile.ZipFile(archive, "w") as z:
        for name in ["b/12.png", "b/9.png", "__MACOSX/b/._9.png", "readme.txt"]:
            z.writestr(name, b"x")
    assert Volume.open(archive).pages == ["b/9.png", "b/12.png"]
    assert Volume.open(archive).mokuro_path == tmp_path / "vol.mokuro"
    (tmp_path / "broken.cbz").write_bytes(b"PK\x03\x04 not really")
    (tmp_path / "empty").mkdir()
    for bad, message in [
        (tmp_path / "missing", "volume not found"),
        (tmp_path / "broken.cbz", "is not a readable zip archive"),
        (tmp_path / "empty", "no page images"),
        (tmp_path / "vol" / "notes.txt", "a volume is a folder of images or a .cbz/.zip"),
    ]:
        with pytest.raises(VolumeError, match=message):
            Volume.open(bad)


def test_mokuro_file_has_mokuros_fields_and_the_readers_pages(models, reader, tmp_path, capsys):
    title = tmp_path / "Some Title"
    vol = make_volume(title / "vol2", 3)
    (vol / "sub").mkdir()
    make_page(9, width=600, height=840).image.save(vol / "sub" / "page10.png")
    (title / "vol1.mokuro").write_text(json.dumps({"title_uuid": "0b0e1f5e-0000-4000-8000-000000000001"}))
    assert main(["--mokuro", str(vol), *models, "--progress"]) == 0
    err = capsys.readouterr().err
    assert "vol2 [" in err and "4/4 pages" in err and "pages/s" in err  # the volume's progress bar, in pages
    assert "4 of 4 pages (4 read, 0 from the cache, 0 could not be read)" in err
    doc = json.loads((title / "vol2.mokuro").read_text(encoding="utf-8"))
    assert set(doc) == TOP
    assert (doc["title"], doc["volume"]) == ("Some Title", "vol2")
    assert doc["title_uuid"] == "0b0e1f5e-0000-4000-8000-000000000001"  # shared with the sibling volume
    assert [p["img_path"] for p in doc["pages"]] == ["page0.png", "page1.png", "page2.png", "sub/page10.png"]
    for entry in doc["pages"]:
        assert set(entry) == PAGE and isinstance(entry["version"], str)
        ours = reader.read_page(vol / entry["img_path"])
        assert (entry["img_width"], entry["img_height"]) == (ours.width, ours.height)
        assert len(entry["blocks"]) == len(ours.blocks)
        for block, mine in zip(entry["blocks"], ours.blocks, strict=True):
            assert set(block) == BLOCK
            assert block["box"] == list(mine.box) and block["lines"] == [mine.text]
            assert block["vertical"] is mine.vertical and block["font_size"] == mine.font_size
            x1, y1, x2, y2 = mine.box
            assert block["lines_coords"] == [[[x1, y1], [x2, y1], [x2, y2], [x1, y2]]]
    assert sum(len(p["blocks"]) for p in doc["pages"]) > 0
    assert not (title / "vol2.mokuro-cache").exists()  # complete: the cache is gone
    # a second run skips the volume; --force reads it again and keeps its uuids
    assert main(["--mokuro", str(vol), *models]) == 0
    assert "exists: skipping" in capsys.readouterr().err
    assert main(["--mokuro", str(vol), *models, "--force"]) == 0
    again = json.loads((title / "vol2.mokuro").read_text(encoding="utf-8"))
    assert (again["volume_uuid"], again["title_uuid"]) == (doc["volume_uuid"], doc["title_uuid"])
    assert again["pages"] == doc["pages"]


def test_bad_pages_are_left_out_and_read_on_the_next_run(models, tmp_path, capsys):
    vol = make_volume(tmp_path / "vol", 3)
    (vol / "page1.png").write_bytes((vol / "page1.png").read_bytes()[:300])  # truncated
    (vol / "info.txt").write_text("not a page: skipped")
    assert main(["--mokuro", str(vol), *models]) == 1
    err = capsys.readouterr().err
    assert "page1.png" in err and "truncated" in err and "2 of 3 pages (2 read, 0 from the cache, 1 could" in err
    doc = json.loads((tmp_path / "vol.mokuro").read_text(encoding="utf-8"))
    assert [p["img_path"] for p in doc["pages"]] == ["page0.png", "page2.png"]
    assert len(list((tmp_path / "vol.mokuro-cache").iterdir())) == 2
    make_page(1, width=600, height=840).image.save(vol / "page1.png")  # repaired
    assert main(["--mokuro", str(vol), *models]) == 0
    assert "3 of 3 pages (1 read, 2 from the cache, 0 could not be read)" in capsys.readouterr().err
    doc = json.loads((tmp_path / "vol.mokuro").read_text(encoding="utf-8"))
    assert [p["img_path"] for p in doc["pages"]] == ["page0.png", "page1.png", "page2.png"]


def test_an_archive_gives_the_folders_pages(models, tmp_path, capsys):
    vol = make_volume(tmp_path / "a" / "vol", 2)
    with zipfile.ZipFile(tmp_path / "vol.cbz", "w") as z:
        for p in sorted(vol.iterdir()):
            z.write(p, f"vol/{p.name}")
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"garbage")
    assert main(["--mokuro", str(vol), str(tmp_path / "vol.cbz"), str(bad), *models]) == 1
    assert "bad.zip is not a readable zip archive" in capsys.readouterr().err
    folder = json.loads((tmp_path / "a" / "vol.mokuro").read_text(encoding="utf-8"))
    archive = json.loads((tmp_path / "vol.mokuro").read_text(encoding="utf-8"))
    assert [p["img_path"] for p in archive["pages"]] == ["vol/page0.png", "vol/page1.png"]
    assert [p["blocks"] for p in archive["pages"]] == [p["blocks"] for p in folder["pages"]]


def test_a_killed_run_resumes_without_losing_or_repeating_pages(models, tmp_path):
    """SIGKILL mid-volume, then the same command: only the missing pages are read; the .mokuro
    equals an uninterrupted run's."""
    count = 10
    vol = make_volume(tmp_path / "killed" / "vol", count)
    reference = make_volume(tmp_path / "whole" / "vol", count)
    command = [sys.executable, "-m", "mlx_mangaocr", "--mokuro", *models, "--batch-size", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    cache = tmp_path / "killed" / "vol.mokuro-cache"
    proc = subprocess.Popen([*command, str(vol)], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and (not cache.is_dir() or len(list(cache.glob("*.json"))) < 3):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "vol.mokuro").exists()
    kept = sorted(cache.glob("*.json"))
    assert 3 <= len(kept) < count and not list(cache.glob(".*"))  # whole entries only, no temporary file
    for entry in kept:
        json.loads(entry.read_text(encoding="utf-8"))
    done = subprocess.run([*command, str(vol)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{count} of {count} pages ({count - len(kept)} read, {len(kept)} from the cache" in done.stderr
    whole = subprocess.run([*command, str(reference)], env=env, capture_output=True, text=True, timeout=600)
    assert whole.returncode == 0, whole.stderr
    resumed = json.loads((tmp_path / "killed" / "vol.mokuro").read_text(encoding="utf-8"))
    straight = json.loads((tmp_path / "whole" / "vol.mokuro").read_text(encoding="utf-8"))
    paths = [p["img_path"] for p in resumed["pages"]]
    assert paths == [f"page{i}.png" for i in range(count)]  # every page once, in order
    assert resumed["pages"] == straight["pages"]


def test_pages_command_text_jsonl_and_drawings(models, reader, tmp_path, capsys):
    pages = make_volume(tmp_path / "pages", 2)
    (pages / "broken.png").write_bytes(b"nope")
    draw = tmp_path / "drawn"
    assert main(["--pages", str(pages), *models, "--jsonl", "--draw", str(draw)]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["path"] for r in records] == [str(pages / n) for n in ("broken.png", "page0.png", "page1.png")]
    assert "error" in records[0] and "is not an image PIL can read" in captured.err
    for record in records[1:]:
        ours = reader.read_page(record["path"])
        assert [b["text"] for b in record["blocks"]] == [b.text for b in ours.blocks]
        assert [b["box"] for b in record["blocks"]] == [list(b.box) for b in ours.blocks]
        assert {"kind", "confidence", "vertical", "bubble", "font_size"} <= set(record["blocks"][0])
        drawn = Image.open(draw / (os.path.basename(record["path"]) + ".png"))  # p.png -> DIR/p.png.png
        assert drawn.size == (record["width"], record["height"])
        original = np.asarray(Image.open(record["path"]).convert("RGB"))
        x1, y1, _, _ = record["blocks"][0]["box"]
        assert not np.array_equal(np.asarray(drawn)[y1, x1], original[y1, x1])  # the box is drawn there
    assert main(["--pages", str(pages / "page0.png"), *models]) == 0
    assert capsys.readouterr().out == "".join(b.text + "\n" for b in reader.read_page(pages / "page0.png").blocks)


def test_model_and_argument_errors(models, tmp_path, capsys):
    page = make_volume(tmp_path / "p", 1) / "page0.png"
    assert main(["--pages", str(page), "--model", models[1], "--detector", str(tmp_path / "nowhere")]) == 2
    assert "nor is it a hub id such as ogkalu/comic-text-and-bubble-detector" in capsys.readouterr().err
    for argv in (["--draw", "d", str(page)], ["--detector", "x", str(page)], ["--mokuro", str(page), "--jsonl"]):
        with pytest.raises(SystemExit):
            main(argv)
