"""Volumes, libraries and the crop job on what real collections hold (issue 20): each case below
failed before the fix, by losing or destroying work, crashing, hanging or growing without bound.

The invariants: any archive member may be hostile; any name may be undecodable; any link may loop;
any cache entry may be garbage; any write may fail; two runs may meet on the same output; no input
file is ever written; memory is bounded by the settings the README names. A failure stays with its
volume or page: named once on stderr, no traceback, the run goes on, exit status 1."""

import errno
import io
import json
import os
import shutil
import sys
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
from hostile import (
    BYTES_PER_PIXEL,
    NO_BYPASS,
    SJIS_MOKURO,
    build_hostile_library,
    exif_rotated_jpeg,
    make_volume,
    page_png,
    patch_member,
    permissions_apply,
    restore_library,
    run_measured,
    tree_digest,
    within,
    zip_bomb,
    zip_of,
)
from oracle import record
from PIL import Image

from mlx_mangaocr import MangaOcr, ModelLoadError, PageReader
from mlx_mangaocr.core.locks import RunLock
from mlx_mangaocr.core.names import display_name
from mlx_mangaocr.frontends.cli import main
from mlx_mangaocr.pipelines.jsonl_parts import read_records
from mlx_mangaocr.pipelines.volumes.library import find_volumes
from mlx_mangaocr.pipelines.volumes.results import PageResults
from mlx_mangaocr.pipelines.volumes.volume import Volume, VolumeError
from testing.synthetic import IMAGES

SJIS = "ページ".encode("cp932")  # a Japanese Windows name, as unpacked on Linux
ENV = {**os.environ, "PYTHONPATH": f"{os.getcwd()}{os.pathsep}{Path(__file__).parent}"}


@pytest.fixture(scope="module")
def models(tiny, small_detector):
    return ["--model", str(tiny.folder), "--detector", str(small_detector.folder), "--decoding", "greedy",
            "--no-progress"]  # fmt: skip


def mokuro(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


# --- no input file is ever written ---------------------------------------------------------------


def test_drawings_never_land_on_an_input_and_never_on_each_other(models, tmp_path, capsys):
    pages = make_volume(tmp_path / "pages", 2)
    shutil.copy(pages / "p0.png", pages / "p0.jpg")  # shares its stem with p0.png (a PNG inside: PIL reads it)
    before = tree_digest(pages)
    assert main(["--pages", str(pages), *models, "--jsonl", "--draw", str(pages)]) == 0  # the pages' own folder
    assert {k: v for k, v in tree_digest(pages).items() if k in before} == before
    assert sorted(p.name for p in pages.glob("*.*.png")) == ["p0.jpg.png", "p0.png.png", "p1.png.png"]
    capsys.readouterr()
    # a drawing that would be an input page (the same file) is refused before anything is read
    clash = make_volume(tmp_path / "clash", 1)
    shutil.copy(clash / "p0.png", clash / "p0.png.png")
    before = tree_digest(clash)
    assert main(["--pages", str(clash), *models, "--draw", str(clash)]) == 2
    err = capsys.readouterr().err
    assert "the drawing of" in err and "would overwrite the input page" in err and "p0.png.png" in err
    assert tree_digest(clash) == before
    # pages from two folders: drawings mirror their paths below the common folder
    assert main(["--pages", str(pages / "p1.png"), str(clash / "p0.png"), *models, "--draw", str(tmp_path / "d")]) == 0
    assert sorted(p.relative_to(tmp_path / "d").as_posix() for p in (tmp_path / "d").rglob("*.png")) == [
        "clash/p0.png.png", "pages/p1.png.png"]  # fmt: skip


# --- two runs may meet on the same output ------------------------------------------------------


def test_a_second_crop_job_on_the_same_output_refuses_or_waits(tiny, tmp_path, capsys):
    crops = tmp_path / "crops"
    crops.mkdir()
    for i in range(2):
        shutil.copy(IMAGES[i], crops / f"{i}{Path(IMAGES[i]).suffix}")
    out = tmp_path / "out.jsonl"
    job = [str(crops), "--model", str(tiny.folder), "--decoding", "greedy", "--jsonl", "--output", str(out),
           "--no-progress"]  # fmt: skip
    with RunLock(tmp_path / "out.jsonl.lock"):  # another run holds FILE
        assert main(job) == 2
        err = capsys.readouterr().err
        assert f"{tmp_path / 'out.jsonl.lock'} is held (host" in err and "--wait" in err
        assert not out.exists() and not (tmp_path / "out.jsonl.parts").exists()
    holder = RunLock(tmp_path / "out.jsonl.lock").acquire()
    threading.Timer(1.0, holder.release).start()  # the other run ends a second later
    assert main([*job, "--wait", "120"]) == 0
    assert [r["path"] for _, r in read_records(out)] == [str(p) for p in sorted(crops.iterdir())]
    assert not (tmp_path / "out.jsonl.lock").exists() and not (tmp_path / "out.jsonl.parts").exists()


def test_a_second_run_on_a_volume_refuses_it_and_the_library_goes_on(models, tmp_path, capsys):
    lib = tmp_path / "lib"
    make_volume(lib / "T" / "busy", 1)
    make_volume(lib / "T" / "free", 1)
    with RunLock(lib / "T" / "busy.mokuro.lock"):
        assert main(["--mokuro", str(lib), *models]) == 1
    err = capsys.readouterr().err
    assert f"{lib / 'T' / 'busy.mokuro.lock'} is held" in err
    assert not (lib / "T" / "busy.mokuro").exists() and not (lib / "T" / "busy.mokuro-cache").exists()
    assert len(mokuro(lib / "T" / "free.mokuro")["pages"]) == 1
    holder = RunLock(lib / "T" / "busy.mokuro.lock").acquire()
    threading.Timer(1.0, holder.release).start()
    assert main(["--mokuro", str(lib), *models, "--wait", "120"]) == 0
    assert len(mokuro(lib / "T" / "busy.mokuro")["pages"]) == 1


def test_runs_remove_only_their_own_files(tiny, models, tmp_path, capsys):
    """finish() and the cache's clear() leave files they did not make (the folder stays, with a
    note), and stale temporary files from a killed run are removed."""
    crops = tmp_path / "crops"
    crops.mkdir()
    shutil.copy(IMAGES[0], crops / "a.png")
    out = tmp_path / "out.jsonl"
    parts = tmp_path / "out.jsonl.parts"
    parts.mkdir()
    (parts / "mine.txt").write_text("a user's file")
    (parts / "settings.json").write_bytes(b"\xff\xfe\x00binary")  # unreadable: its parts are discarded
    (parts / "rank-0.jsonl").write_bytes(
        b"\xff\xfe garbage\n" + json.dumps({"path": "x", "text": "t"}).encode() + b"\n"
    )
    (tmp_path / ".out.jsonl.otherhost.1.tmp").write_text("left by a kill")
    job = [str(crops), "--model", str(tiny.folder), "--decoding", "greedy", "--jsonl", "--output", str(out)]
    assert main(job) == 0
    err = capsys.readouterr().err
    assert "left in place" in err and "mine.txt" in err and "Traceback" not in err
    assert (parts / "mine.txt").read_text() == "a user's file" and sorted(os.listdir(parts)) == ["mine.txt"]
    assert not (tmp_path / ".out.jsonl.otherhost.1.tmp").exists()
    assert [r["path"] for _, r in read_records(out)] == [str(crops / "a.png")]
    # a part with garbage lines: the lines are skipped and their crops read again, FILE is fine
    (parts / "mine.txt").unlink()
    parts.rmdir()
    parts.mkdir()
    (parts / "rank-0.jsonl").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xff\n")
    assert main([*job, "--force"]) == 0
    assert "another --output" not in capsys.readouterr().err
    # something that is not a folder where the parts go
    assert not parts.exists()
    parts.write_text("not a folder")
    assert main(job) == 2
    assert "is where the parts of" in capsys.readouterr().err
    parts.unlink()
    # a folder inside a volume's cache: the .mokuro is written, a rerun does not read the pages again
    vol = make_volume(tmp_path / "v" / "vol", 2)
    (tmp_path / "v" / "vol.mokuro-cache" / "notes").mkdir(parents=True)
    (tmp_path / "v" / "vol.mokuro-cache" / ".0123456789abcdef.json.host.7.tmp").write_text("{")
    assert main(["--mokuro", str(vol), *models]) == 0
    err = capsys.readouterr().err
    assert "2 of 2 pages (2 read" in err and "left in place" in err
    assert sorted(os.listdir(tmp_path / "v" / "vol.mokuro-cache")) == ["notes"]
    assert main(["--mokuro", str(vol), *models]) == 0
    assert "exists: skipping" in capsys.readouterr().err


# --- a volume is done when its .mokuro holds every page ---------------------------------------


def test_a_volume_whose_pages_all_failed_is_read_once_they_are_fixed(models, tmp_path, capsys):
    vol = tmp_path / "vol"
    vol.mkdir()
    for i in range(2):
        (vol / f"p{i}.png").write_bytes(page_png(i)[:200])  # truncated
    assert main(["--mokuro", str(vol), *models]) == 1
    assert "0 of 2 pages (0 read, 0 from the cache, 2 could not be read)" in capsys.readouterr().err
    assert mokuro(tmp_path / "vol.mokuro")["pages"] == []
    make_volume(vol, 2)  # fixed
    assert main(["--mokuro", str(vol), *models]) == 0
    assert "2 of 2 pages (2 read" in capsys.readouterr().err
    assert [p["img_path"] for p in mokuro(tmp_path / "vol.mokuro")["pages"]] == ["p0.png", "p1.png"]
    # a .mokuro that is not mokuro's JSON is not taken for a finished volume
    (tmp_path / "vol.mokuro").write_bytes(b"\x00garbage")
    assert main(["--mokuro", str(vol), *models]) == 0
    err = capsys.readouterr().err
    assert "is not a .mokuro file" in err and "2 of 2 pages" in err
    assert len(mokuro(tmp_path / "vol.mokuro")["pages"]) == 2


def test_cache_entries_of_any_shape_are_read_again(models, tmp_path, capsys):
    vol = make_volume(tmp_path / "vol", 2)
    (vol / "p1.png").write_bytes(b"broken")  # keeps the cache after the first run
    assert main(["--mokuro", str(vol), *models]) == 1
    capsys.readouterr()
    volume = Volume.open(vol)
    entry = PageResults(volume, "").file("p0.png")
    good = json.loads(entry.read_text())
    result = good["result"]
    garbage = [None, [], "text", {"page": "p0.png"}, {**good, "result": None}, {**good, "result": {"width": 1}},
               {**good, "result": {**result, "blocks": [{"box": [1, 2]}]}},
               {**good, "result": {**result, "width": "600"}}]  # fmt: skip
    if result["blocks"]:
        garbage.append({**good, "result": {**result, "blocks": [{**result["blocks"][0], "box": [1, 2, 3]}]}})
    for bad in garbage:
        entry.write_text(json.dumps(bad))
        assert PageResults(volume, good["settings"]).get("p0.png") is None
    assert main(["--mokuro", str(vol), *models]) == 1  # p1 is still broken; p0 is read again, no crash
    err = capsys.readouterr().err
    assert "1 of 2 pages (1 read, 0 from the cache, 1 could not be read)" in err and "Traceback" not in err


# --- any write may fail -------------------------------------------------------------------------


def test_a_full_disk_fails_that_volume_only_and_leaves_no_temporary_file(models, tmp_path, capsys, monkeypatch):
    lib = tmp_path / "lib"
    make_volume(lib / "T" / "a-full", 2)
    make_volume(lib / "T" / "b-fine", 1)
    real_fsync = os.fsync

    def fsync(fd):  # the disk is full for what is written beside a-full
        if "a-full" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    assert main(["--mokuro", str(lib), *models]) == 1
    monkeypatch.setattr(os, "fsync", real_fsync)
    err = capsys.readouterr().err
    assert "a-full: cannot write" in err and "No space left on device" in err and "Traceback" not in err
    assert not (lib / "T" / "a-full.mokuro").exists()
    assert len(mokuro(lib / "T" / "b-fine.mokuro")["pages"]) == 1
    assert not [p for p in lib.rglob("*") if p.name.endswith(".tmp")]  # nothing half-written
    assert main(["--mokuro", str(lib), *models]) == 0  # space again: the next run completes it
    assert len(mokuro(lib / "T" / "a-full.mokuro")["pages"]) == 2


def test_permissions_are_reported_per_page_and_volume(models, tmp_path, capsys):
    lib = tmp_path / "lib"
    make_volume(lib / "RO" / "vol", 1)
    make_volume(lib / "T" / "page-locked", 2)
    make_volume(lib / "T" / "sub-locked" / "ch2", 1, start=5)
    make_volume(lib / "T" / "sub-locked", 1)
    make_volume(lib / "Hidden" / "vol", 1)
    make_volume(lib / "U" / "good", 1)
    (lib / "RO").chmod(0o555)
    (lib / "T" / "page-locked" / "p1.png").chmod(0)
    (lib / "T" / "sub-locked" / "ch2").chmod(0)
    (lib / "Hidden").chmod(0)
    try:
        with permissions_apply():
            assert main(["--mokuro", str(lib), *models]) == 1
    finally:
        for path in (lib / "RO", lib / "T" / "sub-locked" / "ch2", lib / "Hidden"):
            path.chmod(0o755)
        (lib / "T" / "page-locked" / "p1.png").chmod(0o644)
    err = capsys.readouterr().err
    assert f"cannot list {lib / 'Hidden'}: Permission denied" in err
    assert f"{lib / 'RO' / 'vol'}: cannot write beside the volume" in err
    assert f"cannot open {lib / 'T' / 'page-locked' / 'p1.png'}: Permission denied" in err
    assert "truncated" not in err and "Traceback" not in err
    assert f"cannot list {lib / 'T' / 'sub-locked' / 'ch2'}: Permission denied; its pages are left out" in err
    assert len(mokuro(lib / "U" / "good.mokuro")["pages"]) == 1
    assert os.listdir(lib / "RO") == ["vol"] and not [p for p in lib.rglob("*") if p.name.endswith(".tmp")]
    assert main(["--mokuro", str(lib), *models]) == 0  # readable again: done, nothing lost
    assert len(mokuro(lib / "T" / "sub-locked.mokuro")["pages"]) == 2
    assert len(mokuro(lib / "T" / "page-locked.mokuro")["pages"]) == 2


# --- any name may be undecodable ----------------------------------------------------------------


def test_names_that_are_not_utf8_are_shown_decoded_and_found_again(tiny, models, tmp_path, capsys):
    title = os.path.join(os.fsencode(tmp_path), SJIS)  # a title folder named in Shift-JIS
    vol = os.path.join(title, b"vol")
    os.makedirs(vol)
    for i, name in enumerate([SJIS + b"1.png", b"\xff\xfe2.png", b"p3.png"]):  # CP932, undecodable, ASCII
        with open(os.path.join(vol, name), "wb") as f:
            f.write(page_png(i) if i != 2 else b"broken")  # p3 fails: the cache is kept
    vol_path = Path(os.fsdecode(vol))
    assert main(["--mokuro", str(vol_path), *models]) == 1
    capsys.readouterr()
    doc = mokuro(vol_path.parent / "vol.mokuro")
    assert doc["title"] == "ページ"
    assert [p["img_path"] for p in doc["pages"]] == ["\\xff\\xfe2.png", "ページ1.png"]
    cache = sorted(os.listdir(vol_path.parent / "vol.mokuro-cache"))
    volume = Volume.open(vol_path)
    assert cache == sorted(PageResults(volume, "").file(p).name for p in ["ページ1.png", "\\xff\\xfe2.png"])
    with open(os.path.join(vol, b"p3.png"), "wb") as f:
        f.write(page_png(3))
    assert main(["--mokuro", str(vol_path), *models]) == 0
    assert "3 of 3 pages (1 read, 2 from the cache" in capsys.readouterr().err  # the same entries found again
    # an archive made on Japanese Windows: CP932 member names without the UTF-8 flag
    cbz = zip_of(tmp_path / "z" / "vol.cbz", {"AAAAAA1.png": page_png(1), "p2.png": page_png(2)})
    patch_member(cbz, "AAAAAA1.png", raw_name=SJIS + b"1.png")
    assert Volume.open(cbz).pages == ["p2.png", "ページ1.png"]
    # crops: the JSON record shows the decoded name, and a rerun finds it done
    crops = os.path.join(os.fsencode(tmp_path), b"crops")
    os.makedirs(crops)
    for name in (SJIS + b".png", b"\xff.png"):
        shutil.copy(IMAGES[0], os.path.join(crops, name))
    out = tmp_path / "crops.jsonl"
    job = [os.fsdecode(crops), "--model", str(tiny.folder), "--decoding", "greedy", "--jsonl", "--output", str(out)]
    assert main(job) == 0
    crops_shown = display_name(os.fsdecode(crops))
    assert sorted(r["path"] for _, r in read_records(out)) == [f"{crops_shown}/\\xff.png", f"{crops_shown}/ページ.png"]
    assert main(job) == 0
    assert "(0 read now, 2 done before, 0 failed)" in capsys.readouterr().err


# --- any link may loop --------------------------------------------------------------------------


def test_links_to_ancestors_are_followed_once(tmp_path):
    lib = tmp_path / "lib"
    make_volume(lib / "T" / "vol", 1)
    make_volume(lib / "T" / "vol" / "extra", 1, start=1)
    (lib / "T" / "a").mkdir()
    (lib / "T" / "a" / "up").symlink_to(lib)
    (lib / "T" / "b").mkdir()
    (lib / "T" / "b" / "up").symlink_to(lib / "T")
    (lib / "T" / "vol" / "extra" / "loop").symlink_to(lib / "T" / "vol")
    with within(60):
        assert find_volumes(lib) == [lib / "T" / "vol"]
        assert Volume.open(lib / "T" / "vol").pages == ["extra/p1.png", "p0.png"]


# --- any archive member may be hostile ----------------------------------------------------------


def test_hostile_members_fail_alone(tmp_path, monkeypatch):
    page = page_png(0)
    members = {"1.png": page, "2.png": page, "3.png": page, "notes.txt": b"x" * 100}
    cbz = zip_of(tmp_path / "vol.cbz", members, zipfile.ZIP_STORED)
    patch_member(cbz, "2.png", flags=0x1)  # encrypted
    patch_member(cbz, "3.png", method=99)  # AES: a method zipfile cannot inflate
    data = bytearray(cbz.read_bytes())
    at = data.find(b"x" * 100)
    data[at] = ord("y")  # a corrupt member that is not a page: no longer refuses the volume (no testzip)
    cbz.write_bytes(bytes(data))
    volume = Volume.open(cbz, max_member_bytes=2**20)
    assert volume.pages == ["1.png", "2.png", "3.png"]
    assert volume.load("1.png").size == (600, 840)
    with pytest.raises(Exception, match="encrypted"):
        volume.load("2.png")
    with pytest.raises(Exception, match="cannot be inflated here"):
        volume.load("3.png")
    dupes = tmp_path / "dupes.cbz"
    with zipfile.ZipFile(dupes, "w") as z, pytest.warns(UserWarning, match="Duplicate name"):
        z.writestr("1.png", b"first")
        z.writestr("1.png", page)
    volume = Volume.open(dupes)
    assert volume.pages == ["1.png"] and "appear more than once" in volume.notes[0]
    assert volume.load("1.png").size == (600, 840)  # the last copy, as unzip leaves it
    bomb = zip_bomb(tmp_path / "bomb.cbz", 64 * 2**20, page)
    volume = Volume.open(bomb, max_member_bytes=2**20)
    with pytest.raises(Exception, match="over the 1,048,576-byte limit on an archive member"):
        volume.load("000.png")
    # a central directory of a million empty members: refused from its count, before zipfile lists it
    from mlx_mangaocr.pipelines.volumes import volume as volume_module

    many = zip_of(tmp_path / "many.cbz", {f"{i}.png": b"" for i in range(70_000)})  # zip64 past 65,535
    assert volume_module.member_count(many) == 70_000
    monkeypatch.setattr(volume_module, "MAX_MEMBERS", 69_999)
    with pytest.raises(VolumeError, match="lists 70,000 members, over the 69,999 a volume may have"):
        Volume.open(many)


# --- EXIF orientation: pages as readers show them ---------------------------------------------


def test_pages_are_read_upright_by_their_exif_orientation(tiny_processor, small_detector):
    """Pages as mokuro (OpenCV) and every viewer show them; crops as upstream manga-ocr reads them."""
    data, upright = exif_rotated_jpeg(0)
    reader = PageReader(tiny_processor, small_detector.detector, decoding={"num_beams": 1})
    page = reader.read_page(data)
    assert (page.width, page.height) == (600, 840)
    assert page == reader.read_page(upright.convert("RGB"))  # the same pixels, the same blocks
    assert sum(len(p.blocks) for p in [page]) > 0
    crop = tiny_processor.image_processor
    assert np.array_equal(crop(data), crop(Image.open(io.BytesIO(data))))  # stored orientation, as upstream
    assert not np.array_equal(crop(data), crop(upright))


# --- the API's own inputs -----------------------------------------------------------------------


def test_one_page_or_no_model_gets_a_clear_error(tiny_processor, small_detector):
    reader = PageReader(tiny_processor, small_detector.detector)
    with pytest.raises(TypeError, match="read_pages takes an iterable of images, got one str"):
        reader.read_pages("page.png")
    with pytest.raises(TypeError, match="process_images takes an iterable of images"):
        tiny_processor.process_images("crop.png")
    with pytest.raises(ModelLoadError, match="a model is a folder or a hub id"):
        MangaOcr(None)


# --- all of it at once, beside good volumes, with memory bounded by the settings ---------------

LIMITS = {"page_group": 2, "max_pixels": 4_000_000, "max_member_mb": 64}


def _command(models, library: Path) -> list[str]:
    return [sys.executable, "-c", NO_BYPASS, "--mokuro", str(library), *models,
            "--page-group", str(LIMITS["page_group"]), "--max-pixels", str(LIMITS["max_pixels"]),
            "--max-member-mb", str(LIMITS["max_member_mb"])]  # fmt: skip


def test_a_hostile_library_runs_to_the_end_in_bounded_memory(models, tmp_path):
    """Every case above in one library beside good volumes, one process, permissions applied: every
    good volume is complete, every bad one is named, no input file changes, and the peak memory is
    within what the settings allow: the same run on a library of small pages (the models and their
    work) plus ``batch x max_pixels x 10`` bytes of pages in flight and one archive member."""
    base = tmp_path / "base"  # small pages only: the models and their work, over several volumes
    for i in range(3):
        make_volume(base / "T" / f"vol{i}", 2, start=2 * i)
    zip_of(base / "T" / "vol3.cbz", {"1.png": page_png(6), "2.png": page_png(7)})
    status, baseline, err, _ = run_measured(_command(models, base), ENV, timeout=600)
    assert status == 0, err
    lib = tmp_path / "lib"
    expected = build_hostile_library(lib)
    try:
        inputs = tree_digest(lib)
        status, peak, err, seconds = run_measured(_command(models, lib), ENV, timeout=900)
    finally:
        restore_library(lib)
    assert status == 1, err
    assert "Traceback" not in err, err
    for name, pages in expected["complete"].items():
        doc = mokuro(lib / name)
        assert len(doc["pages"]) == pages, (name, err)
    for name in expected["unwritten"]:
        assert not (lib / name).exists(), name
    for message in expected["errors"]:
        assert message in err, (message, err)
    exif = mokuro(lib / "Good" / "exif-vol.mokuro")["pages"][0]
    assert (exif["img_width"], exif["img_height"]) == (600, 840)  # upright, as mokuro-reader shows the page
    assert [p["img_path"] for p in mokuro(lib / SJIS_MOKURO)["pages"]] == [
        "\\xff2.png",
        "ページ1.png",
    ]
    assert tree_digest(lib) == inputs  # no input file changed
    assert not [p for p in lib.rglob("*") if p.name.endswith((".tmp", ".lock"))]
    pages = LIMITS["page_group"] * LIMITS["max_pixels"] * BYTES_PER_PIXEL / 2**20
    bound = baseline + pages + LIMITS["max_member_mb"]
    assert peak <= bound, f"peak RSS {peak:.0f} MiB over {baseline:.0f} + {pages:.0f} + {LIMITS['max_member_mb']} MiB"
    record("hostile library (issue 20): volumes, exit status", f"{len(expected['complete'])} written, status {status}")
    record("hostile library: seconds, peak RSS MiB (bound, small-page run)", f"{seconds:.1f} s, {peak:.0f} "
           f"({bound:.0f}, {baseline:.0f})")  # fmt: skip


# --- a second hostile pass (a reviewer's reproductions): each failed before its fix ------------


def test_a_lock_file_is_never_written_through_a_link(models, tiny, tmp_path, capsys):
    lib = tmp_path / "lib"
    vol = make_volume(lib / "vol1", 2)
    (lib / "vol1.mokuro.lock").symlink_to(vol / "p0.png")  # a lock name pointing at an input
    make_volume(lib / "vol2", 1)
    before = tree_digest(lib)
    assert main(["--mokuro", str(lib), *models]) == 1
    err = capsys.readouterr().err
    assert "vol1.mokuro.lock is where the lock of" in err and "it is a link" in err
    assert tree_digest(lib) == before | {k: v for k, v in tree_digest(lib).items() if k not in before}
    assert len(mokuro(lib / "vol2.mokuro")["pages"]) == 1
    os.link(IMAGES[0], tmp_path / "out.jsonl.lock")  # a second name of an input, for the crop job
    crops = tmp_path / "crops"
    crops.mkdir()
    shutil.copy(IMAGES[1], crops / "a.png")
    digest = tree_digest(Path(IMAGES[0]).parent)
    assert main([str(crops), "--model", str(tiny.folder), "--decoding", "greedy", "--jsonl", "--output",
                 str(tmp_path / "out.jsonl")]) == 2  # fmt: skip
    assert "a second name of a file" in capsys.readouterr().err
    assert tree_digest(Path(IMAGES[0]).parent) == digest


def test_json_of_any_shape_or_depth_is_garbage_not_a_crash(models, tmp_path, capsys):
    lib = tmp_path / "lib"
    for name in ("a", "b", "c", "d"):
        make_volume(lib / name, 1)
    deep = "[" * 200_000
    (lib / "a.mokuro").write_text(deep)  # nested too deep to parse
    (lib / "b.mokuro").write_text(json.dumps({"pages": [{"img_path": [1]}]}))  # an img_path that is no name
    (lib / "c.mokuro").write_text('{"title_uuid": "\\ud800", "pages": []}')  # a lone surrogate
    vol_d = Volume.open(lib / "d")
    entry = PageResults(vol_d, "").file("p0.png")
    entry.parent.mkdir()
    entry.write_text(deep)
    assert main(["--mokuro", str(lib), *models]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is not a .mokuro file" in err
    for name in ("a", "b", "c", "d"):
        doc = mokuro(lib / f"{name}.mokuro")
        assert len(doc["pages"]) == 1 and "\ud800" not in doc["title_uuid"]
    assert not list(lib.glob("*.lock"))


def test_fifos_never_make_a_run_wait(models, tiny, tmp_path, capsys):
    lib = tmp_path / "lib"
    make_volume(lib / "vol1", 1)
    make_volume(lib / "vol2", 1)
    make_volume(lib / "vol3", 1)
    os.mkfifo(lib / "vol1.mokuro")
    os.mkfifo(lib / "other.mokuro")  # a sibling read for the title's uuid
    vol3 = Volume.open(lib / "vol3")
    (lib / "vol3.mokuro-cache").mkdir()
    os.mkfifo(PageResults(vol3, "").file("p0.png"))
    os.mkfifo(tmp_path / "fifo.cbz")
    with within(120):
        assert main(["--mokuro", str(lib), str(tmp_path / "fifo.cbz"), *models]) == 1
        err = capsys.readouterr().err
        assert "fifo.cbz is not a regular file" in err
        assert len(mokuro(lib / "vol2.mokuro")["pages"]) == 1
        os.mkfifo(tmp_path / "out.jsonl")
        crops = tmp_path / "crops"
        crops.mkdir()
        shutil.copy(IMAGES[0], crops / "a.png")
        os.mkfifo(crops / "b.png")
        assert main([str(crops), "--model", str(tiny.folder), "--jsonl", "--output", str(tmp_path / "out.jsonl")]) == 2
        assert "not a regular file" in capsys.readouterr().err
        assert main([str(crops / "b.png"), "--model", str(tiny.folder)]) == 1
        assert "b.png is not a regular file" in capsys.readouterr().err


def test_links_inside_a_volume_stay_inside_and_an_alias_does_not_take_its_mokuro(models, tmp_path, capsys):
    lib = tmp_path / "lib"
    make_volume(lib / "vol1", 1)
    make_volume(lib / "vol2", 2, start=3)
    (lib / "vol1" / "up").symlink_to("..")  # would take in vol2's pages (a link to / the whole disk)
    (lib / "latest").symlink_to("vol2")  # an alias that sorts first
    assert main(["--mokuro", str(lib), *models]) == 0
    err = capsys.readouterr().err
    assert "links to a folder outside the volume" in err
    assert [p["img_path"] for p in mokuro(lib / "vol1.mokuro")["pages"]] == ["p0.png"]
    assert len(mokuro(lib / "vol2.mokuro")["pages"]) == 2 and not (lib / "latest.mokuro").exists()


def test_names_that_show_alike_stay_apart(tiny, models, tmp_path, capsys):
    vol = os.path.join(os.fsencode(tmp_path), b"vol")
    os.makedirs(vol)
    for i, name in enumerate([b"\xff2.png", b"\\xff2.png", "ページ1.png".encode(), SJIS + b"1.png"]):
        with open(os.path.join(vol, name), "wb") as f:
            f.write(page_png(i))
    assert main(["--mokuro", os.fsdecode(vol), *models]) == 0
    assert "4 of 4 pages" in capsys.readouterr().err
    paths = [p["img_path"] for p in mokuro(tmp_path / "vol.mokuro")["pages"]]
    assert len(set(paths)) == 4 and {"\\xff2.png", "ページ1.png"} <= set(paths)  # the real names keep themselves
    out = tmp_path / "crops.jsonl"
    assert main([os.fsdecode(vol), "--model", str(tiny.folder), "--decoding", "greedy", "--jsonl", "--output",
                 str(out)]) == 0  # fmt: skip
    assert len({r["path"] for _, r in read_records(out)}) == 4  # four crops, four records


def test_outputs_never_land_on_inputs(models, tiny, tmp_path, capsys):
    pages = make_volume(tmp_path / "pages", 1)
    before = tree_digest(pages)
    assert main(["--pages", str(pages / "p0.png"), *models, "--json", "--output", str(pages / "p0.png")]) == 2
    assert "is one of the inputs" in capsys.readouterr().err
    assert main([str(pages / "p0.png"), "--model", str(tiny.folder), "--output", str(pages / "p0.png")]) == 2
    assert main([str(pages), "--model", str(tiny.folder), "--output", str(tmp_path / "no" / "out.txt")]) == 2
    assert "not a file in an existing folder" in capsys.readouterr().err
    (tmp_path / "afile").write_text("x")
    assert main(["--pages", str(pages), *models, "--draw", str(tmp_path / "afile")]) == 2
    assert "--draw" in capsys.readouterr().err and tree_digest(pages) == before


def test_a_folder_at_a_cache_entrys_name_is_moved_aside(models, tmp_path, capsys):
    vol = make_volume(tmp_path / "vol", 2)
    entry = PageResults(Volume.open(vol), "").file("p0.png")
    entry.mkdir(parents=True)
    assert main(["--mokuro", str(vol), *models]) == 0
    err = capsys.readouterr().err
    assert "is not a cache entry: renamed" in err and "2 of 2 pages" in err
    assert len(mokuro(tmp_path / "vol.mokuro")["pages"]) == 2


def test_odd_settings_are_refused_and_done_volumes_need_no_writing(models, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--mokuro", str(tmp_path), "--max-member-mb", "inf"])
    lib = tmp_path / "ro"
    make_volume(lib / "vol", 1)
    (lib / "vol" / "._p0.png").write_bytes(b"AppleDouble")  # macOS leftovers are not pages
    (lib / "vol" / "__MACOSX").mkdir()
    (lib / "vol" / "__MACOSX" / "p9.png").write_bytes(b"x")
    assert main(["--mokuro", str(lib), *models]) == 0
    capsys.readouterr()
    lib.chmod(0o555)
    try:
        with permissions_apply():
            assert main(["--mokuro", str(lib), *models]) == 0  # done: skipped without writing anything
    finally:
        lib.chmod(0o755)
    assert "exists: skipping" in capsys.readouterr().err
