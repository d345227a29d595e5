"""``mlx-mangaocr eval``: its figures against an independent oracle (a plain dynamic-programming
edit distance, here) applied to upstream ``manga_ocr.MangaOcr``'s predictions on the same samples."""

import json
import os
import random
from pathlib import Path

import jaconv
import manga_ocr
import pytest
from hostile import permissions_apply
from hypothesis import given, settings
from hypothesis import strategies as st
from manga_ocr.ocr import post_process as upstream_post_process
from PIL import Image

from mlx_mangaocr.frontends.cli import main as cli
from mlx_mangaocr.pipelines.evaluation import edit_distance, normalizer
from mlx_mangaocr.pipelines.evaluation.scores import SampleScore, Scores
from testing.labelled import make_manga109, write_jsonl
from testing.synthetic import IMAGES


def levenshtein(a: str, b: str) -> int:
    """The textbook dynamic program: the oracle, independent of the project's metric code."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        previous, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (ca != cb))
    return row[-1]


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="あいう漢字ＡAa ．.…", max_size=25), st.text(alphabet="あいう漢字ＡAa ．.…", max_size=25))
def test_rapidfuzz_equals_the_textbook_edit_distance(a, b):
    assert edit_distance(a, b) == levenshtein(a, b)


def test_rapidfuzz_on_random_unicode_strings():
    rng = random.Random(0)
    for _ in range(500):
        a = "".join(chr(rng.randrange(0x20, 0x30000)) for _ in range(rng.randrange(40)))
        b = "".join(rng.choice([c, chr(rng.randrange(0x3040, 0x30A0))]) for c in a[: rng.randrange(len(a) + 1)])
        assert edit_distance(a, b) == levenshtein(a, b)


def oracle(references: list[str], predictions: list[str], vertical: list[bool]) -> dict:
    """The figures, computed apart from the project's code."""

    def figures(idx):
        dist = [levenshtein(references[i], predictions[i]) for i in idx]
        chars = [len(references[i]) for i in idx]
        own = [d / c if c else float(bool(predictions[i])) for d, c, i in zip(dist, chars, idx, strict=True)]
        return {"samples": len(idx), "edits": sum(dist), "characters": sum(chars),
                "cer": sum(dist) / sum(chars) if sum(chars) else None,
                "mean_cer": sum(own) / len(idx) if idx else None,
                "exact_match": sum(references[i] == predictions[i] for i in idx) / len(idx) if idx else None,
                }  # fmt: skip

    every = list(range(len(references)))
    lengths = {"1-5": (1, 5), "6-15": (6, 15), "16+": (16, 10**9)}
    out = figures(every)
    out["by_orientation"] = {"vertical": figures([i for i in every if vertical[i]]),
                             "horizontal": figures([i for i in every if not vertical[i]])}  # fmt: skip
    out["by_length"] = {
        k: figures([i for i in every if lo <= len(references[i]) <= hi]) for k, (lo, hi) in lengths.items()
    }
    if any(not r for r in references):
        out["by_length"] = {"0": figures([i for i in every if not references[i]]), **out["by_length"]}
    return out


def labels_for(predictions: list[str]) -> list[str]:
    """Labels that equal the prediction, differ by a few edits, differ only in width and spacing,
    or are empty after normalization, in turn."""
    labels = []
    for i, p in enumerate(predictions):
        kind = i % 4
        if kind == 0:
            labels.append(p)
        elif kind == 1:
            labels.append("あ" + p[1:-2] + "漢字" if len(p) > 3 else p + "いう")
        elif kind == 2:  # half-width where the prediction is full-width, spaces and a line break
            half = jaconv.z2h(p, kana=False, ascii=True, digit=True)
            labels.append(" ".join(half[j : j + 3] for j in range(0, len(half), 3)) + "\n")
        else:
            labels.append(" \n\u3000 ")
    return labels


@pytest.fixture(scope="module")
def upstream(tiny):
    return manga_ocr.MangaOcr(pretrained_model_name_or_path=str(tiny.folder), force_cpu=True)


def run_eval(args, capsys) -> tuple[int, str, str]:
    code = cli(["eval", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_eval_equals_the_oracle_on_upstream_predictions(tiny, upstream, tmp_path, capsys):
    images = IMAGES[:12]
    predictions = [upstream(Image.open(p)) for p in images]
    labels = labels_for(predictions)
    rows = [{"image": str(p), "text": t} for p, t in zip(images, labels, strict=True)]
    write_jsonl(tmp_path / "set.jsonl", rows)
    code, out, err = run_eval([str(tmp_path / "set.jsonl"), "--model", str(tiny.folder), "--json", "--records",
                               str(tmp_path / "records.jsonl")], capsys)  # fmt: skip
    assert code == 0, err
    summary = json.loads(out)
    references = [upstream_post_process(t) for t in labels]  # manga-ocr's post-processing on the reference
    vertical = [Image.open(p).height > Image.open(p).width for p in images]
    want = oracle(references, predictions, vertical)
    assert summary["normalize"] == "manga-ocr" and summary["decoding"] == "beam"
    for key in ("samples", "edits", "characters", "cer", "mean_cer", "exact_match", "by_orientation", "by_length"):
        assert summary[key] == want[key], key  # the same sums in the same order: equal floats
    assert 0 < summary["exact_match"] < 1 and summary["by_length"]["0"]["samples"] == 3
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text("utf-8").splitlines()]
    assert [r["prediction"] for r in records] == predictions  # upstream's own texts
    assert [r["reference"] for r in records] == references
    assert all(r.keys() >= {"id", "reference", "prediction", "cer", "confidence"} for r in records)


def test_two_models_side_by_side_on_the_same_samples(tiny, tmp_path, capsys):
    truth = make_manga109(tmp_path / "m", {"A": 1, "B": 1})
    code, out, err = run_eval([str(tmp_path / "m"), "--model", str(tiny.folder), "--model", str(tiny.folder),
                               "--decoding", "greedy", "--json", "--limit", "7"], capsys)  # fmt: skip
    assert code == 0, err
    models = json.loads(out)["models"]
    assert len(models) == 2 and models[0]["model"] == str(tiny.folder)
    for m in models:
        assert m["samples"] == 7 and m["decoding"] == "greedy"
        assert m["sources"] == [{"path": str(tmp_path / "m"), "kind": "manga109", "samples": len(truth), "skipped": 0,
                                 "books": ["A", "B"]}]  # fmt: skip
    drop = ("model", "seconds", "samples_per_second")
    assert {k: v for k, v in models[0].items() if k not in drop} == {
        k: v for k, v in models[1].items() if k not in drop
    }
    code, out, err = run_eval([str(tmp_path / "m"), "--model", str(tiny.folder), "--model", str(tiny.folder),
                               "--decoding", "greedy", "--limit", "3"], capsys)  # fmt: skip
    header, *rows = out.splitlines()
    assert header.split() == [str(tiny.folder)] * 2 and rows[0].split() == ["samples", "3", "3"]
    assert any(r.startswith("CER length 16+ (n)") for r in rows) and "normalization: manga-ocr" in out


def test_normalizations_and_bad_data(tiny, tmp_path, capsys):
    crop = str(IMAGES[0])
    rows = [{"image": crop, "text": "ＡＢ"}, {"image": str(tmp_path / "no.png"), "text": "x"}]
    write_jsonl(tmp_path / "a.jsonl", rows)
    code, _, err = run_eval([str(tmp_path / "a.jsonl"), "--model", str(tiny.folder)], capsys)
    assert code == 2 and "a.jsonl:2: image not found" in err and "--skip-bad" in err
    for normalize in ("none", "nfkc"):
        code, out, err = run_eval([str(tmp_path / "a.jsonl"), "--model", str(tiny.folder), "--skip-bad", "--json",
                                   "--decoding", "greedy", "--normalize", normalize, "--records",
                                   str(tmp_path / f"{normalize}.jsonl")], capsys)  # fmt: skip
        assert code == 1 and "skipped: " in err and "a.jsonl:2: image not found" in err
        summary = json.loads(out)
        assert summary["normalize"] == normalize and summary["samples"] == 1 and summary["skipped"] == 1
        record = json.loads((tmp_path / f"{normalize}.jsonl").read_text("utf-8"))
        assert record["reference"] == ("ＡＢ" if normalize == "none" else "AB")
    (tmp_path / "broken.png").write_bytes(Image.open(crop).tobytes()[:50])
    write_jsonl(tmp_path / "b.jsonl", [{"image": str(tmp_path / "broken.png"), "text": "x"}])
    code, _, err = run_eval([str(tmp_path / "b.jsonl"), "--model", str(tiny.folder)], capsys)
    assert code == 2 and "b.jsonl:1: " in err and "broken.png" in err
    code, _, err = run_eval([str(tmp_path / "b.jsonl"), "--model", str(tiny.folder), "--skip-bad"], capsys)
    assert code == 2 and "skipped: " in err and "every sample was left out (1)" in err
    code, _, err = run_eval([str(tmp_path), "--model", str(tiny.folder)], capsys)
    assert code == 2 and "books.txt" in err and "labels.jsonl" in err


def test_manga_ocr_normalization_of_references():
    reference_of, prediction_of = normalizer("manga-ocr")
    assert reference_of("A 1\n…・・ ｶﾞ") == "Ａ１．．．．．ガ" == upstream_post_process("A 1\n…・・ ｶﾞ")
    assert prediction_of("Ａ １") == "Ａ １"  # predictions come out of manga-ocr's post-processing already
    assert normalizer("nfkc")[1]("Ａ１ｶﾞ") == "A1ガ" and normalizer("none")[0](" x ") == " x "


def test_confusions_and_empty_references():
    scores = Scores()
    pairs = [("あいう", "あかう"), ("あいう", "あかう"), ("えお", "えおか"), ("", "か"), ("", ""), ("きく", "く")]
    for ref, pred in pairs:
        scores.add(SampleScore(ref, pred, levenshtein(ref, pred), vertical=len(ref) > 2))
    s = scores.summary()
    assert s["confusions"][:3] == [{"reference": "", "prediction": "か", "count": 2},  # ties in code point order
                                   {"reference": "い", "prediction": "か", "count": 2},
                                   {"reference": "き", "prediction": "", "count": 1}]  # fmt: skip
    assert s["edits"] == 5 and s["characters"] == 10 and s["cer"] == 0.5
    assert s["mean_cer"] == pytest.approx((1 / 3 + 1 / 3 + 1 / 2 + 1 + 0 + 1 / 2) / 6)
    assert s["by_length"]["0"] == {"samples": 2, "cer": None, "mean_cer": 0.5, "exact_match": 0.5, "edits": 1,
                                   "characters": 0}  # fmt: skip


def test_the_shipped_example_set_is_upstreams_expected_text(tiny, capsys):
    """``assets/examples/labels.jsonl`` labels the shared real crops with upstream's own output from
    the real weights (so eval with them gives CER 0); here it is read end to end with a tiny model."""
    from testing.synthetic import EXAMPLES

    repo = Path(__file__).resolve().parents[1] / "assets" / "examples"
    expected = json.loads((EXAMPLES / "expected_results.json").read_text("utf-8"))
    rows = [json.loads(line) for line in (repo / "labels.jsonl").read_text("utf-8").splitlines()]
    assert rows == [{"image": r["filename"], "text": r["result"]} for r in expected]
    for row in rows:
        assert (repo / row["image"]).read_bytes() == (EXAMPLES / "images" / row["image"]).read_bytes()
    code, out, err = run_eval([str(repo / "labels.jsonl"), "--model", str(tiny.folder), "--json", "--decoding",
                               "greedy"], capsys)  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["samples"] == 12


def test_records_never_overwrite_what_the_run_reads(tiny, tmp_path, capsys):
    """--records may not be a file the run reads: a listed image, a label file, books.txt, an
    annotation, --books; when it cannot be written the summary is still printed."""
    image = tmp_path / "a.jpg"
    image.write_bytes(IMAGES[0].read_bytes())
    write_jsonl(tmp_path / "a.jsonl", [{"image": "a.jpg", "text": "あ"}])
    make_manga109(tmp_path / "m", {"A": 1})
    (tmp_path / "bk.txt").write_text("A\n", encoding="utf-8")
    cases = [
        (["a.jsonl"], "a.jpg"),
        (["m"], "m/books.txt"),
        (["m"], "m/annotations/A.xml"),
        (["m"], "m/images/A/000.jpg"),
        (["m", "--books", "bk.txt"], "bk.txt"),
    ]
    for args, records in cases:
        before = (tmp_path / records).read_bytes()
        data = [str(tmp_path / a) if not a.startswith("--") and i % 2 == 0 else a for i, a in enumerate(args)]
        data = [str(tmp_path / a) if (i and args[i - 1] == "--books") else a for i, a in enumerate(data)]
        code, _, err = run_eval([*data, "--model", str(tiny.folder), "--records", str(tmp_path / records)], capsys)
        assert code == 2 and "which this run reads" in err, (records, err)
        assert (tmp_path / records).read_bytes() == before
    (tmp_path / "out").mkdir()
    code, _, err = run_eval([str(tmp_path / "a.jsonl"), "--model", str(tiny.folder), "--records",
                             str(tmp_path / "out")], capsys)  # fmt: skip
    assert code == 2 and "not a file in an existing folder" in err
    code, out, err = run_eval([str(tmp_path / "a.jsonl"), "--model", str(tiny.folder), "--decoding", "greedy",
                               "--records", str(tmp_path / "nowhere" / "r.jsonl")], capsys)  # fmt: skip
    assert code == 2 and "not a file in an existing folder" in err
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "r.jsonl").write_text("old", encoding="utf-8")
    os.chmod(tmp_path / "ro", 0o500)
    try:
        with permissions_apply():
            code, out, err = run_eval([str(tmp_path / "a.jsonl"), "--model", str(tiny.folder), "--decoding", "greedy",
                                       "--json", "--records", str(tmp_path / "ro" / "r.jsonl")], capsys)  # fmt: skip
    finally:
        os.chmod(tmp_path / "ro", 0o700)
    assert code == 1 and "cannot write --records" in err and json.loads(out)["samples"] == 1
    assert (tmp_path / "ro" / "r.jsonl").read_text("utf-8") == "old"
