"""Labelled data: every source through one interface (JSONL, CSV, synth output, Manga109-s,
.mokuro), crops cut by each source's rule, read lazily, and bad data named (or skipped)."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import mlx_mangaocr.pipelines.datasets.listed as listed
from mlx_mangaocr.core.images import load_page
from mlx_mangaocr.pipelines.datasets import DataError, open_dataset, open_datasets
from testing.labelled import EXPECTED, make_manga109, make_mokuro, write_jsonl
from testing.synthetic import IMAGES

CROPS = IMAGES[:4]


def crop_rows(folder: Path) -> list[dict]:
    return [{"image": str(p), "text": EXPECTED[p.name]} for p in CROPS]


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


def test_jsonl_csv_and_synth_folders_list_the_same_crops(tmp_path, monkeypatch):
    rows = crop_rows(tmp_path)
    (tmp_path / "images").mkdir()
    for i, p in enumerate(CROPS):  # relative paths resolve from the list's folder
        shutil.copy(p, tmp_path / "images" / p.name)
        rows[i] = {"image": f"images/{p.name}", "text": rows[i]["text"], "extra": 1}
    write_jsonl(tmp_path / "a.jsonl", rows)
    (tmp_path / "b.csv").write_text(
        "id,text,image,other\n" + "".join(f'x{i},"{r["text"]}",{r["image"]},z\n' for i, r in enumerate(rows)),
        encoding="utf-8",
    )
    write_jsonl(tmp_path / "labels.jsonl", rows)  # a synth output folder
    loads = []
    monkeypatch.setattr(listed, "load_decoded", lambda p: loads.append(p) or Image.open(p))
    sets = open_datasets([tmp_path / "a.jsonl", tmp_path / "b.csv", tmp_path])
    assert [d.kind for d in sets] == ["jsonl", "csv", "synth"]
    assert not loads  # labels are indexed, images are read only when asked for
    for d in sets:
        assert [s.text for s in d.samples] == [EXPECTED[p.name] for p in CROPS]
        for sample, path in zip(d.samples, CROPS, strict=True):
            assert same_pixels(sample.image(), Image.open(path))
    assert [s.id for s in sets[1].samples] == ["x0", "x1", "x2", "x3"]  # an id column is the id
    assert sets[0].samples[0].id.endswith("a.jsonl:1")  # else FILE:LINE
    assert len(loads) == 12


def test_manga109_boxes_are_cut_as_manga_ocr_cuts_them(tmp_path):
    truth = make_manga109(tmp_path / "m", {"Alpha": 2, "Beta": 1, "Gamma": 1})
    data = open_dataset(tmp_path / "m")
    assert data.kind == "manga109" and data.books == ["Alpha", "Beta", "Gamma"]
    assert {s.id: s.text for s in data.samples} == {k: v.text for k, v in truth.items()}
    for sample in data.samples:
        t = truth[sample.id]
        page = np.asarray(Image.open(t.page).convert("RGB"))
        x1, y1, x2, y2 = t.box  # manga-ocr: 10 px on each side, clipped to the page
        want = page[max(y1 - 10, 0) : min(y2 + 10, page.shape[0]), max(x1 - 10, 0) : min(x2 + 10, page.shape[1])]
        assert np.array_equal(np.asarray(sample.image().convert("RGB")), want)
    (tmp_path / "split.txt").write_text("Gamma\n\nAlpha\n", encoding="utf-8")
    from mlx_mangaocr.pipelines.datasets import read_books

    split = open_dataset(tmp_path / "m", read_books(tmp_path / "split.txt"))
    assert split.books == ["Alpha", "Gamma"] and split.describe()["books"] == ["Alpha", "Gamma"]
    assert {s.id.split("/")[0] for s in split.samples} == {"Alpha", "Gamma"}
    with pytest.raises(DataError, match="no Manga109-s books.txt given lists: Delta"):
        open_datasets([tmp_path / "m"], ["Alpha", "Delta"])
    with pytest.raises(DataError, match="no DATA is a Manga109-s folder"):
        open_datasets([write_jsonl(tmp_path / "l.jsonl", [{"image": str(CROPS[0]), "text": "x"}])], ["Alpha"])


@pytest.mark.parametrize("archive", [False, True])
def test_mokuro_blocks_are_cut_as_the_page_reader_cuts_them(tmp_path, archive):
    path, truth = make_mokuro(tmp_path, "vol", 2, archive=archive)
    data = open_dataset(path)
    assert data.kind == "mokuro" and [s.text for s in data.samples] == [t for _, _, t in truth]
    pages = tmp_path / "vol"
    if archive:
        import zipfile

        zipfile.ZipFile(tmp_path / "vol.cbz").extractall(tmp_path / "x")
        pages = tmp_path / "x"
    for sample, (name, box, _) in zip(data.samples, truth, strict=True):
        page = np.asarray(load_page(pages / name).convert("RGB"))
        x1, y1, x2, y2 = box
        pad = round(0.05 * min(x2 - x1, y2 - y1))  # the page reader's margin, times the shorter side
        want = page[max(y1 - pad, 0) : min(y2 + pad, page.shape[0]), max(x1 - pad, 0) : min(x2 + pad, page.shape[1])]
        assert np.array_equal(np.asarray(sample.image().convert("RGB")), want)
    data.close()


def test_bad_data_is_named_and_skip_bad_counts_it(tmp_path):
    good = str(CROPS[0])
    rows = [
        {"image": good, "text": "よし"},
        {"image": str(tmp_path / "gone.png"), "text": "x"},
        {"image": good, "text": ""},
    ]
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    with path.open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    with pytest.raises(DataError, match=r"d\.jsonl:2: image not found: .*gone\.png"):
        open_dataset(path)
    data = open_dataset(path, skip_bad=True)
    assert len(data) == 1 and len(data.skipped) == 3
    assert "d.jsonl:3: the text is empty" in data.skipped[1] and "d.jsonl:4: not a JSON object" in data.skipped[2]

    (tmp_path / "c.csv").write_text("picture,label\na.png,x\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"c\.csv: its header has no 'image' and no 'text' column"):
        open_dataset(tmp_path / "c.csv", skip_bad=True)  # a source that cannot be read at all always stops

    truth = make_manga109(tmp_path / "m", {"A": 1, "B": 1})
    xml = tmp_path / "m/annotations/A.xml"
    text = xml.read_text("utf-8")
    first = next(iter(truth))
    box = truth[first].box
    xml.write_text(text.replace(f'xmax="{box[2]}"', 'xmax="5000"', 1), encoding="utf-8")
    with pytest.raises(DataError, match=r"A\.xml: page 0, text .*: the box \[.*5000.*\] is outside the 900x1200 page"):
        open_dataset(tmp_path / "m")
    (tmp_path / "m/annotations/B.xml").write_text("<book><pages><page", encoding="utf-8")
    with pytest.raises(DataError, match=r"B\.xml:1: broken XML"):
        open_dataset(tmp_path / "m", ["B"])
    data = open_dataset(tmp_path / "m", skip_bad=True)
    assert len(data.skipped) == 2 and len(data) == len([k for k in truth if k.startswith("A/")]) - 1

    page = tmp_path / "m/images/A/000.jpg"
    page.write_bytes(page.read_bytes()[:200])  # truncated after indexing: named when read
    data = open_dataset(tmp_path / "m", ["A"], skip_bad=True)
    with pytest.raises(DataError, match=r"A\.xml: page 0, text .*000\.jpg"):
        data.samples[0].image()

    for bad in [tmp_path / "nothing.txt", tmp_path]:
        if bad.suffix:
            bad.write_text("x")
        with pytest.raises(DataError, match=r"\.jsonl file .* \.csv file .* \.mokuro .* books\.txt.* labels\.jsonl"):
            open_dataset(bad)
    with pytest.raises(DataError, match="data not found"):
        open_dataset(tmp_path / "missing.jsonl")


def test_a_mokuro_without_its_pages_or_with_bad_blocks_is_named(tmp_path):
    path, _ = make_mokuro(tmp_path, "vol", 1)
    data = json.loads(path.read_text("utf-8"))
    data["pages"][0]["blocks"][0]["lines"] = ["", ""]
    data["pages"][0]["blocks"][1]["box"] = [10, 10, 900, 50]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DataError, match=r"vol\.mokuro: page 1 \(p001\.png\), block 0: the text is empty"):
        open_dataset(path)
    skipped = open_dataset(path, skip_bad=True)
    assert len(skipped.skipped) == 2 and "block 1: the box [10, 10, 900, 50] is outside the page" in skipped.skipped[1]
    shutil.rmtree(tmp_path / "vol")
    with pytest.raises(DataError, match=r"vol\.mokuro: its pages are not beside it"):
        open_dataset(path)
    path.write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(DataError, match="not a .mokuro file"):
        open_dataset(path)


def test_hostile_data_gets_one_message_each(tmp_path):
    """What a hostile or careless dataset holds: each is named, never a traceback or a wrong label."""
    crop = str(CROPS[0])
    rows = [{"image": crop, "text": "\ud800"}, {"image": "\ud800.jpg", "text": "あ"},
            {"image": str(tmp_path), "text": "あ"}, {"image": crop, "text": "よし", "id": "\udfff"}]  # fmt: skip
    path = tmp_path / "s.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")  # \\u escapes: valid JSON
    data = open_dataset(path, skip_bad=True)
    assert len(data) == 0 and [m.split(": ", 1)[1] for m in data.skipped] == [
        "the text is not valid Unicode (it holds a lone surrogate)",
        "the image path is not a file name (it holds a lone surrogate)",
        f"the image {tmp_path} is not a regular file",
        "the id is not valid Unicode (it holds a lone surrogate)",
    ]

    (tmp_path / "l.csv").write_text(f"image,text\n{crop},あい\u2028う\n{crop},か\n", encoding="utf-8")
    assert [s.text for s in open_dataset(tmp_path / "l.csv").samples] == ["あい\u2028う", "か"]
    (tmp_path / "d.csv").write_text(f"image,text,text\n{crop},あ,WRONG\n", encoding="utf-8")
    with pytest.raises(DataError, match="names the column 'text' more than once"):
        open_dataset(tmp_path / "d.csv", skip_bad=True)
    with pytest.raises(DataError, match="given twice"):
        open_datasets([path, tmp_path / "." / "s.jsonl"])
    (tmp_path / "loop.jsonl").symlink_to(tmp_path / "loop.jsonl")
    with pytest.raises(DataError, match="cannot open .*loop.jsonl: Too many levels of symbolic links"):
        open_dataset(tmp_path / "loop.jsonl")

    mokuro, _ = make_mokuro(tmp_path / "k", "vol", 1)
    doc = json.loads(mokuro.read_text("utf-8"))
    blocks = doc["pages"][0]["blocks"]
    blocks[0]["box"], blocks[1]["box"] = [float("nan"), 1, 50, 50], [True, True, 50, 50]
    mokuro.write_text(json.dumps(doc), encoding="utf-8")  # NaN as JSON writes it
    data = open_dataset(mokuro, skip_bad=True)
    assert len(data.skipped) == 2 and all('no "box" of four finite numbers' in m for m in data.skipped)
    doc["pages"][0].update(img_width=400, img_height=550)  # the page really is 800x1100
    blocks[0]["box"], blocks[1]["box"] = [1, 1, 50, 50], [1, 1, 60, 60]
    doc["pages"][0]["blocks"] = blocks[:2]
    mokuro.write_text(json.dumps(doc), encoding="utf-8")
    sample = open_dataset(mokuro).samples[0]
    with pytest.raises(DataError, match=r"p001\.png is 800x1100, but the \.mokuro says 400x550"):
        sample.image()

    root = tmp_path / "m"
    truth = make_manga109(root, {"A": 1})
    xml = root / "annotations" / "A.xml"
    text = xml.read_text("utf-8").replace("encoding='utf-8'", "encoding='Shift_JIS'")
    xml.write_bytes(text.encode("shift_jis"))
    assert {s.id: s.text for s in open_dataset(root).samples} == {k: v.text for k, v in truth.items()}
    xml.write_bytes(text.replace("Shift_JIS", "bogus-enc").encode("shift_jis"))
    with pytest.raises(DataError, match="the declared encoding 'bogus-enc' is not one Python knows"):
        open_dataset(root)
    xml.write_text(re.sub(r'(<text id="\w+" xmin=")', r"\1１", text.replace("Shift_JIS", "utf-8"), count=1),
                   encoding="utf-8")  # fmt: skip
    with pytest.raises(DataError, match="whole-number xmin"):
        open_dataset(root)
    (root / "books.txt").write_text("A\n../outside\n/etc/x\nA\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"books\.txt: the title '\.\./outside' is not a plain name"):
        open_dataset(root)
    data = open_dataset(root, skip_bad=True)
    assert data.books == ["A"] and "'/etc/x' is not a plain name" in data.skipped[1]
    assert "the title 'A' is listed twice" in data.skipped[2]


def test_threads_load_the_pages_of_crops_at_once():
    """Each thread keeps its own last page: two threads reading crops of two pages load them at
    the same time (a shared cache under one lock let one load at a time: this barrier would time
    out), and a thread reading one page's boxes in turn loads it once."""
    import threading

    from mlx_mangaocr.pipelines.datasets.samples import PageCache

    cache, barrier, loads, errors = PageCache(), threading.Barrier(2, timeout=10), [], []

    def load(key):
        loads.append(key)
        barrier.wait()  # both loads must be under way together
        return Image.new("L", (4, 4), key)

    def read(key):
        try:
            for _ in range(3):  # three boxes of the page
                assert cache.get(key, lambda: load(key)).getpixel((0, 0)) == key
        except Exception as e:  # noqa: BLE001 - reported below: a thread's error is not the test's
            errors.append(e)

    threads = [threading.Thread(target=read, args=(k,)) for k in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(loads) == [1, 2]
