"""Labelled data: every source through one interface (JSONL, CSV, synth output, Manga109-s,
.mokuro), crops cut by each source's rule, read lazily, and bad data named (or skipped)."""

import json
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
    with pytest.raises(DataError, match="Delta"):
        open_dataset(tmp_path / "m", ["Delta"])
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
