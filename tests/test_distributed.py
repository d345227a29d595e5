"""Several ranks under ``mlx.launch``: the manifest, the sharding and the resume logic without the
launcher; then real runs of ``mlx.launch -n 2`` (the ring backend, on free local ports) whose
outputs must equal one process's, with every item done once, including after a rank is killed
mid-run (the test-only fault hook) and the command is run again with another number of ranks."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from io import BytesIO
from pathlib import Path

import pytest
from oracle import record

from mlx_mangaocr.core.ranks import Ranks
from mlx_mangaocr.frontends.cli import main
from mlx_mangaocr.pipelines.jsonl_parts import JsonlParts, read_records
from mlx_mangaocr.pipelines.volumes.library import find_volumes
from mlx_mangaocr.pipelines.volumes.volume import VolumeError
from testing.pages import make_page
from testing.synthetic import IMAGES

LAUNCH = Path(sys.executable).with_name("mlx.launch")
ENV = {**os.environ, "PYTHONPATH": os.getcwd()}


class FakeGroup:
    def __init__(self, rank, size):
        self._rank, self._size = rank, size

    def rank(self):
        return self._rank

    def size(self):
        return self._size


def test_every_item_goes_to_exactly_one_rank():
    for size in range(1, 6):
        for count in range(0, 13):
            items = [f"item{i}" for i in range(count)]
            shares = [Ranks(FakeGroup(r, size)).take(items) for r in range(size)]
            assert sorted(x for share in shares for x in share) == sorted(items)
            assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_find_volumes_reads_a_library(tmp_path):
    lib = tmp_path / "lib"
    for name in ["B/vol10/1.png", "B/vol2/1.png", "B/vol2/extra/2.png", "A/one.cbz", "A/notes/readme.txt",
                 ".hidden/v/1.png", "C/ch/9.jpg"]:  # fmt: skip
        (lib / name).parent.mkdir(parents=True, exist_ok=True)
        (lib / name).write_bytes(b"x")
    (lib / "A" / "nested" / "two.zip").parent.mkdir()
    (lib / "A" / "nested" / "two.zip").write_bytes(b"x")
    found = [p.relative_to(lib).as_posix() for p in find_volumes(lib)]
    assert found == ["A/nested/two.zip", "A/one.cbz", "B/vol2", "B/vol10", "C/ch"]  # natural order, recursive
    assert find_volumes(lib / "B" / "vol2") == [lib / "B" / "vol2"]  # images directly in it: a volume
    assert find_volumes(lib / "A" / "one.cbz") == [lib / "A" / "one.cbz"]
    with pytest.raises(VolumeError, match="no volumes in .*notes"):
        find_volumes(lib / "A" / "notes")
    with pytest.raises(VolumeError, match="volume not found"):
        find_volumes(lib / "missing")


def test_jsonl_parts_resume_merge_and_torn_lines(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text(
        '{"path": "other.png", "text": "kept"}\nnot json\n{"path": "b.png", "text": "old b"}\n'
        '{"path": "c.png", "error": "was broken"}\n',
        encoding="utf-8",
    )
    job = JsonlParts(out, "settings-1")
    assert job.prepare() is None
    with job.open_part(0) as part:
        job.append(part, {"path": "a.png", "text": "new a"})
    with open(job.part(1), "w", encoding="utf-8") as f:  # a rank killed in the middle of a line
        f.write('{"path": "d.png", "text": "new d"}\n{"path": "c.png", "te')
    assert [r["path"] for _, r in read_records(job.part(1))] == ["d.png"]
    assert job.done() == {"other.png", "a.png", "b.png", "d.png"}  # c.png failed before: tried again
    assert job.done(force=True) == {"a.png", "d.png"}
    with job.open_part(1) as part:  # the owner cuts the torn line off before appending
        job.append(part, {"path": "c.png", "text": "new c"})
    assert job.part(1).read_text(encoding="utf-8").count("\n") == 2
    merged = job.merge(["a.png", "b.png", "c.png", "d.png", "e.png"])
    lines = [json.loads(line) if line.startswith("{") else line for line in merged.lines]
    assert lines[:2] == [{"path": "other.png", "text": "kept"}, "not json"]  # outside the inputs: kept, first
    assert [x["text"] for x in lines[2:]] == ["new a", "old b", "new c", "new d"]
    assert merged.missing == ["e.png"] and merged.new == 3
    forced = job.merge(["b.png"], force=True)  # FILE's old b is not taken: b has no result yet
    assert forced.missing == ["b.png"] and not any("b.png" in line for line in forced.lines)
    job.finish(job.merge(["a.png", "b.png", "c.png", "d.png"]))
    assert not job.folder.exists()
    assert [r["path"] for _, r in read_records(out) if r] == ["other.png", "a.png", "b.png", "c.png", "d.png"]
    # parts made with other settings are discarded, not merged
    JsonlParts(out, "settings-1").prepare()
    with job.open_part(0) as part:
        job.append(part, {"path": "a.png", "text": "stale"})
    assert "discarded 1 part" in JsonlParts(out, "settings-2").prepare()
    assert JsonlParts(out, "settings-2").parts() == []


def test_jsonl_output_resumes_in_one_process(tiny, tmp_path, capsys):
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, image in enumerate(IMAGES[:5]):
        shutil.copy(image, crops / f"{i}{Path(image).suffix}")
    out = tmp_path / "out.jsonl"
    out.write_text('{"path": "earlier.png", "text": "from another run"}\n', encoding="utf-8")
    args = [str(crops), "--model", str(tiny.folder), "--decoding", "greedy", "--jsonl", "--output", str(out)]
    assert main(args) == 0
    first = out.read_text(encoding="utf-8")
    assert "5 crops (5 read now, 0 done before, 0 failed)" in capsys.readouterr().err
    assert [r["path"] for _, r in read_records(out)] == ["earlier.png", *sorted(str(p) for p in crops.iterdir())]
    assert main(args) == 0  # everything is there: nothing is read, FILE is unchanged
    assert "(0 read now, 5 done before" in capsys.readouterr().err
    assert out.read_text(encoding="utf-8") == first
    assert main([*args, "--force"]) == 0
    assert "(5 read now, 0 done before" in capsys.readouterr().err
    strip = [{k: v for k, v in r.items() if k != "seconds"} for _, r in read_records(out)]
    assert strip == [{k: v for k, v in json.loads(x).items() if k != "seconds"} for x in first.splitlines()]
    assert main([str(crops), "--jsonl", "--output", str(tmp_path / "no" / "such" / "f.jsonl")]) == 2
    assert "not a file in an existing folder" in capsys.readouterr().err
    picture = tmp_path / "picture.png"
    shutil.copy(IMAGES[0], picture)  # --output given a file that is not JSONL: refused, left as it was
    assert main([str(crops), "--model", str(tiny.folder), "--jsonl", "--output", str(picture)]) == 2
    assert "is not a JSON Lines file" in capsys.readouterr().err
    assert picture.read_bytes() == Path(IMAGES[0]).read_bytes() and not (tmp_path / "picture.png.parts").exists()


# --- real runs under mlx.launch ----------------------------------------------------------------


def free_ports(count: int) -> int:
    """A port p with p .. p + count - 1 all free (the ring backend listens on one a rank)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            start = s.getsockname()[1]
        if start + count > 65535:
            continue
        try:
            for port in range(start, start + count):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return start
    raise RuntimeError("no free local ports")


def launch(ranks: int, *args: str, fault: str | None = None, timeout: int = 300):
    """``mlx.launch -n RANKS -- python -m mlx_mangaocr ARGS``; returns (stderr, seconds)."""
    assert LAUNCH.exists(), f"{LAUNCH} not found: mlx.launch comes with the mlx package"
    env = {**ENV, "MLX_MANGAOCR_TEST_FAULT": fault} if fault else ENV
    command = [str(LAUNCH), "-n", str(ranks), "--backend", "ring", "-p", str(free_ports(ranks)), "--",
               sys.executable, "-m", "mlx_mangaocr", *args]  # fmt: skip
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    return done.stdout + done.stderr, time.perf_counter() - began


def without_seconds(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "seconds"} for _, r in read_records(path)]


def test_agree_and_shared_storage_checks_stop_every_rank(tmp_path):
    """Ranks that see different work, or cannot see rank 0's files, stop with a message, all of them."""
    script = tmp_path / "check.py"
    script.write_text(
        "import sys\nfrom pathlib import Path\nfrom mlx_mangaocr.core.ranks import Ranks, DistributedError\n"
        "ranks = Ranks.init()\n"
        "try:\n"
        "    ranks.agree('the work', 'same')\n"
        "    ranks.check_shared([Path(sys.argv[1])])\n"
        "    print(f'rank {ranks.rank} of {ranks.size}: agreed and shared', flush=True)\n"
        "    ranks.agree('the work', f'rank {ranks.rank}')\n"
        "except DistributedError as e:\n"
        "    print(f'rank {ranks.rank}: {e}', flush=True)\n"
        "try:\n"
        "    ranks.check_shared([Path(sys.argv[1]) / str(ranks.rank)])\n"
        "except DistributedError as e:\n"
        "    print(f'rank {ranks.rank}: {e}', flush=True)\n",
        encoding="utf-8",
    )
    for r in range(2):
        (tmp_path / str(r)).mkdir()
    command = [str(LAUNCH), "-n", "2", "--backend", "ring", "-p", str(free_ports(2)), "--",
               sys.executable, str(script), str(tmp_path)]  # fmt: skip
    out = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=120).stdout
    for r in range(2):
        assert f"rank {r} of 2: agreed and shared" in out
        assert f"rank {r}: the ranks disagree on the work: rank 0 and rank(s) 1 see different files" in out
        assert re.search(f"rank {r}: rank\\(s\\) 1 do not see files rank 0 writes", out), out
    assert not list(tmp_path.rglob(".mlx-mangaocr-shared-*"))  # rank 0 cleans its marks up


def test_two_ranks_crops_equal_one_process_and_survive_a_killed_rank(tiny, tmp_path):
    crops = tmp_path / "crops"
    crops.mkdir()
    for i, image in enumerate(IMAGES):
        shutil.copy(image, crops / f"{i:02d}{Path(image).suffix}")
    (crops / "99-broken.png").write_bytes(b"not an image")
    count = len(IMAGES) + 1
    common = ["--model", str(tiny.folder), "--decoding", "greedy", "--batch-size", "2", "--no-progress"]

    log, one_seconds = launch(1, str(crops), *common, "--jsonl", "--output", str(tmp_path / "one.jsonl"))
    reference = without_seconds(tmp_path / "one.jsonl")
    assert len(reference) == count and "error" in reference[-1], log
    assert f"({count - 1} read now, 0 done before, 1 failed) by 1 rank(s)" in log, log

    shown = [a for a in common if a != "--no-progress"]  # each rank's progress line (stderr is no terminal)
    log, two_seconds = launch(2, str(crops), *shown, "--jsonl", "--output", str(tmp_path / "two.jsonl"))
    assert "rank 0/2: 8/8 images" in log and "rank 1/2: 7/7 images" in log, log  # the broken crop counts as done
    assert without_seconds(tmp_path / "two.jsonl") == reference, log
    assert not (tmp_path / "two.jsonl.parts").exists()
    shares = [int(x) for x in re.findall(r"rank \d: (\d+) read", log)]
    assert len(shares) == 2 and sum(shares) == count - 1 and abs(shares[0] - shares[1]) <= 1, log
    record("crops, mlx.launch -n 1 (greedy, tiny model, process start included)", f"{count} in {one_seconds:.1f} s")
    record("crops, mlx.launch -n 2", f"{count} crops, {shares} read by rank (+1 broken), {two_seconds:.1f} s")

    killed = tmp_path / "killed.jsonl"
    log, _ = launch(2, str(crops), *common, "--jsonl", "--output", str(killed), fault="1:3")
    assert "rank 1 exited with code -9" in log, log
    assert not killed.exists()
    before = [r["path"] for part in sorted((tmp_path / "killed.jsonl.parts").glob("rank-*.jsonl"))
              for _, r in read_records(part)]  # fmt: skip
    assert len(before) >= 3 and len(set(before)) == len(before)
    log, _ = launch(3, str(crops), *common, "--jsonl", "--output", str(killed))  # another number of ranks
    done_before = len([p for p in before if "broken" not in p])
    assert f"({count - 1 - done_before} read now, {done_before} done before, 1 failed)" in log, log
    assert without_seconds(killed) == reference  # complete, in input order, each crop once
    assert len(re.findall(r"rank \d: \d+ read", log)) == 3


def make_library(root: Path) -> Path:
    (root / "Title" / "vol1").mkdir(parents=True)
    for i in range(5):
        make_page(i, width=600, height=840).image.save(root / "Title" / "vol1" / f"p{i}.png")
    with zipfile.ZipFile(root / "Title" / "vol2.cbz", "w") as z:
        for i in range(3):
            data = BytesIO()
            make_page(10 + i, width=600, height=840).image.save(data, "PNG")
            z.writestr(f"{i}.png", data.getvalue())
    return root


def mokuro_pages(root: Path) -> dict:
    return {v: json.loads((root / "Title" / f"{v}.mokuro").read_text(encoding="utf-8"))["pages"]
            for v in ("vol1", "vol2")}  # fmt: skip


def test_two_ranks_mokuro_equal_one_process_and_survive_a_killed_rank(tiny, small_detector, tmp_path, capsys):
    common = ["--mokuro", "--model", str(tiny.folder), "--detector", str(small_detector.folder),
              "--decoding", "greedy", "--batch-size", "2", "--no-progress"]  # fmt: skip
    one = make_library(tmp_path / "one")
    log, one_seconds = launch(1, str(one), *common)
    assert "done: 2 of 2 volume(s), 8 pages read, 0 from the cache, 0 could not be read, by 1 rank(s)" in log, log
    reference = mokuro_pages(one)
    assert [len(reference["vol1"]), len(reference["vol2"])] == [5, 3]

    two = make_library(tmp_path / "two")
    log, two_seconds = launch(2, str(two), *common)
    assert mokuro_pages(two) == reference, log
    assert "vol1.mokuro: 5 of 5 pages (5 read: 3 by rank 0, 2 by rank 1" in log, log
    assert "vol2.mokuro: 3 of 3 pages (3 read: 2 by rank 0, 1 by rank 1" in log, log
    assert "[rank 0: 5 read, 0 failed; rank 1: 3 read, 0 failed]" in log, log
    assert not list(two.rglob("*.mokuro-cache"))
    record("mokuro, mlx.launch -n 1 (tiny model, small detector)", f"2 volumes, 8 pages in {one_seconds:.1f} s")
    record("mokuro, mlx.launch -n 2", f"2 volumes, 8 pages, [5, 3] read by rank, {two_seconds:.1f} s")

    killed = make_library(tmp_path / "killed")
    log, _ = launch(2, str(killed), *common, fault="1:1")  # rank 1 dies after its first page of vol1
    assert "rank 1 exited with code -9" in log, log
    assert not list(killed.rglob("*.mokuro"))
    cached = len(list((killed / "Title" / "vol1.mokuro-cache").glob("*.json")))
    assert 1 <= cached < 5
    assert main([str(killed), *common]) == 0  # again, as one process
    err = capsys.readouterr().err
    assert f"vol1.mokuro: 5 of 5 pages ({5 - cached} read, {cached} from the cache" in err, err
    assert mokuro_pages(killed) == reference  # complete, in page order, each page once
