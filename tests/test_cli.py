"""The command line: files and folders, text/JSON/JSONL output, batching, failures, the progress
bar, --watch, --clipboard and the default model; against the library's own results."""

import io
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import time

import pytest
from PIL import Image

from mlx_mangaocr import ModelLoadError
from mlx_mangaocr.frontends.cli import main
from testing.synthetic import IMAGES


def test_one_image_prints_its_text(tiny, tiny_processor, capsys):
    assert main([str(IMAGES[0]), "--model", str(tiny.folder), "--decoding", "greedy"]) == 0
    assert capsys.readouterr().out == tiny_processor.process_image(IMAGES[0], num_beams=1) + "\n"


def test_folder_and_files_jsonl_with_a_failure(tiny, tiny_processor, tmp_path, capsys):
    folder = tmp_path / "pages"
    folder.mkdir()
    for p in IMAGES[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "zz-broken.png").write_bytes(b"not a png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    args = [str(folder), str(tmp_path / "missing.jpg"), str(IMAGES[5]), "--model", str(tiny.folder)]
    assert main([*args, "--jsonl", "--batch-size", "2"]) == 1
    captured = capsys.readouterr()
    records = [json.loads(line) for line in captured.out.splitlines()]
    paths = [str(folder / p.name) for p in IMAGES[:3]] + [str(folder / "zz-broken.png"), str(tmp_path / "missing.jpg")]
    assert [r["path"] for r in records] == [*paths, str(IMAGES[5])]  # input order, failures in place
    good = [r for r in records if "text" in r]
    results = tiny_processor.recognize([*IMAGES[:3], IMAGES[5]])
    assert [r["text"] for r in good] == [r.text for r in results]
    assert [r["confidence"] for r in good] == [round(r.confidence, 4) for r in results]
    for r in good:
        assert 0 < r["confidence"] <= 1 and r["seconds"] > 0
    errors = {r["path"]: r["error"] for r in records if "error" in r}
    assert "is not an image PIL can read" in errors[str(folder / "zz-broken.png")]
    assert "image file not found" in errors[str(tmp_path / "missing.jpg")]
    assert captured.err.count("error: ") == 2  # one message per failed file


def test_json_array_greedy_and_text_with_paths(tiny, tiny_processor, capsys):
    args = [str(IMAGES[0]), str(IMAGES[1]), "--model", str(tiny.folder), "--decoding", "greedy"]
    assert main([*args, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    expected = [tiny_processor.process_image(p, num_beams=1) for p in IMAGES[:2]]
    assert [r["text"] for r in records] == expected
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [f"{p}\t{t}" for p, t in zip(IMAGES[:2], expected, strict=True)]


def test_progress_bar_on_stderr(tiny, capsys):
    assert main([str(p) for p in IMAGES[:3]] + ["--model", str(tiny.folder), "--progress", "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "2/3 images" in err and "3/3 images" in err and "img/s" in err
    assert main([str(p) for p in IMAGES[:3]] + ["--model", str(tiny.folder)]) == 0
    assert "images" not in capsys.readouterr().err  # not a terminal: no bar unless asked


def test_usage_and_model_errors_exit_2(tiny, tmp_path, capsys):
    assert main([str(IMAGES[0]), "--model", str(tmp_path / "no-model")]) == 2
    assert "model folder not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    with pytest.raises(SystemExit):
        main([str(IMAGES[0]), "--batch-size", "0"])
    assert main(["--watch", str(tmp_path / "nowhere"), "--model", str(tiny.folder)]) == 2
    assert "--watch needs a folder" in capsys.readouterr().err


def test_empty_folder_is_a_failure(tiny, tmp_path, capsys):
    assert main([str(tmp_path), "--model", str(tiny.folder)]) == 1
    assert f"no image files in folder {tmp_path}" in capsys.readouterr().err


def test_watch_reads_new_images_and_survives_partial_files(tiny, tiny_processor, tmp_path):
    folder, out = tmp_path / "inbox", tmp_path / "out.jsonl"
    folder.mkdir()
    (folder / "old.jpg").write_bytes(IMAGES[0].read_bytes())  # there before the start: skipped
    args = ["--watch", str(folder), "--model", str(tiny.folder), "--output", str(out), "--jsonl"]
    codes = []
    worker = threading.Thread(target=lambda: codes.append(main([*args, "--interval", "0.05", "--limit", "2"])))
    worker.start()
    time.sleep(0.5)
    data = IMAGES[1].read_bytes()
    partial = folder / "new.jpg"
    partial.write_bytes(data[: len(data) // 3])  # a file caught half written, left so for a while
    time.sleep(0.6)
    partial.write_bytes(data)  # then completed
    time.sleep(0.6)
    (folder / "second.png").write_bytes(IMAGES[2].read_bytes())
    worker.join(timeout=60)
    assert not worker.is_alive() and codes == [1]  # the partial read was reported, the run went on
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["path"] for r in records] == [str(partial), str(partial), str(folder / "second.png")]
    assert "could not be decoded" in records[0]["error"]
    assert records[1]["text"] == tiny_processor.process_image(IMAGES[1])
    assert records[2]["text"] == tiny_processor.process_image(IMAGES[2])


def _fake_xclip(bin_dir, clip_dir):
    """An ``xclip`` stand-in: ``-o`` prints clip_dir/in.png (Pillow's ImageGrab reads it),
    ``-in`` stores stdin as clip_dir/out.txt."""
    script = bin_dir / "xclip"
    script.write_text(
        "#!/bin/sh\n"
        f'case "$*" in *-o*) if [ -f "{clip_dir}/in.png" ]; then cat "{clip_dir}/in.png"; '
        'else echo "Error: target image/png not available" >&2; exit 1; fi ;;\n'
        f'*-in*) cat > "{clip_dir}/out.txt" ;; esac\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_clipboard_reads_new_images_and_copies_the_text_back(tiny, tiny_processor, tmp_path, monkeypatch):
    bin_dir, clip = tmp_path / "bin", tmp_path / "clip"
    bin_dir.mkdir(), clip.mkdir()
    _fake_xclip(bin_dir, clip)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    out = tmp_path / "out.txt"
    codes = []
    args = ["--clipboard", "--model", str(tiny.folder), "--output", str(out), "--interval", "0.05", "--limit", "1"]
    worker = threading.Thread(target=lambda: codes.append(main(args)))
    worker.start()
    time.sleep(0.5)  # the clipboard holds no image at start
    buf = io.BytesIO()
    Image.open(IMAGES[3]).save(buf, format="PNG")
    (clip / "in.png").write_bytes(buf.getvalue())
    worker.join(timeout=60)
    assert not worker.is_alive() and codes == [0]
    expected = tiny_processor.process_image(Image.open(io.BytesIO(buf.getvalue())))
    assert (clip / "out.txt").read_text(encoding="utf-8") == expected  # copied back
    assert out.read_text(encoding="utf-8") == expected + "\n"


def test_no_clipboard_gives_a_clear_message(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))  # no xclip, no wl-copy
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":0")
    assert main(["--clipboard", "--model", str(tiny.folder)]) == 2
    assert "no clipboard tool: install wl-clipboard (Wayland: wl-paste and wl-copy) or xclip (X11)" in (
        capsys.readouterr().err
    )
    monkeypatch.delenv("DISPLAY")
    assert main(["--clipboard", "--model", str(tiny.folder)]) == 2
    assert "no graphical session" in capsys.readouterr().err


def test_default_model_is_converted_on_first_use(tiny, tmp_path, monkeypatch, capsys):
    """No --model: the cache folder's model; missing, kha-white/manga-ocr-base is converted into it
    (through the hub code path, served here from a folder), and offline it says what to run."""
    from mlx_mangaocr.loading import ocr as loading
    from mlx_mangaocr.loading.registry import resolve_model

    monkeypatch.setenv("MLX_MANGAOCR_HOME", str(tmp_path / "home"))
    target = tmp_path / "home" / "manga-ocr-base"

    def offline(repo_id):
        raise ModelLoadError(f"cannot get config.json of {repo_id!r}: offline and not in the Hugging Face cache")

    monkeypatch.setattr(loading, "download", offline)
    assert main([str(IMAGES[0])]) == 2
    err = capsys.readouterr().err
    assert f"no converted model in {target}" in err and "mlx-mangaocr-convert kha-white/manga-ocr-base" in err
    assert not target.exists()  # nothing half-written

    monkeypatch.setattr(loading, "download", lambda repo_id: tiny.folder)
    assert main([str(IMAGES[0]), "--decoding", "greedy"]) == 0
    first = capsys.readouterr()
    assert f"converting kha-white/manga-ocr-base into {target}" in first.err
    assert (target / "model.safetensors").is_file() and resolve_model("ocr", None) == target
    monkeypatch.setattr(loading, "download", offline)  # converted: no hub needed any more
    assert main([str(IMAGES[0]), "--decoding", "greedy"]) == 0
    second = capsys.readouterr()
    assert second.out == first.out and "converting" not in second.err


def test_console_script_and_module_entry_point(tiny, tiny_processor):
    """``python -m mlx_mangaocr`` in a fresh process (as the console script runs main())."""
    done = subprocess.run(
        [sys.executable, "-m", "mlx_mangaocr", str(IMAGES[4]), "--model", str(tiny.folder), "--decoding", "greedy"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == tiny_processor.process_image(IMAGES[4], num_beams=1) + "\n"


def test_subcommands_and_every_earlier_form(tiny, tmp_path, capsys, monkeypatch):
    """``mlx-mangaocr COMMAND``; the flag forms of before as aliases; a command's name over a file's."""
    from mlx_mangaocr.frontends import cli

    assert main(["--help"]) == 0
    listing = capsys.readouterr().out
    for command in ("read", "pages", "mokuro", "watch", "clipboard", "convert", "bench"):
        assert f"\n  {command} " in listing  # one line each
    assert cli.split(["read", "a.png"]) == ("read", ["a.png"])
    assert cli.split(["a.png", "--jsonl"]) == ("read", ["a.png", "--jsonl"])
    assert cli.split(["--pages", "p/", "--draw", "d"]) == ("pages", ["p/", "--draw", "d"])
    assert cli.split(["v/", "--mokuro", "--force"]) == ("mokuro", ["v/", "--force"])
    assert cli.split(["--watch", "dir", "--limit", "1"]) == ("watch", ["dir", "--limit", "1"])
    assert cli.split(["--watch=dir"]) == ("watch", ["dir"])
    assert cli.split(["--clipboard", "--interval", "1"]) == ("clipboard", ["--interval", "1"])
    assert cli.split(["--", "read"]) == ("read", ["--", "read"])  # the file named read
    assert cli.split(["./read"]) == ("read", ["./read"])
    with pytest.raises(SystemExit):
        cli.split(["--pages", "--mokuro", "x"])
    # the file named like a command is read through ./NAME or --, and the subcommand reads images too
    monkeypatch.chdir(tmp_path)
    shutil.copy(IMAGES[0], tmp_path / "read")
    model = ["--model", str(tiny.folder), "--decoding", "greedy"]
    assert main(["./read", *model]) == 0
    text = capsys.readouterr().out
    assert main(["read", *model, "--", "read"]) == 0 and capsys.readouterr().out == text
    assert main(["read", "./read", *model]) == 0 and capsys.readouterr().out == text
    # no abbreviations: --sched is not --scheduler
    with pytest.raises(SystemExit):
        main([str(IMAGES[0]), "--sched", "static", *model])
    assert "unrecognized arguments: --sched" in capsys.readouterr().err


def test_bench_outside_a_checkout_says_so_in_one_line(monkeypatch, tmp_path, capsys):
    from mlx_mangaocr.frontends.cli import bench

    monkeypatch.setattr(bench, "CHECKOUT", tmp_path)  # as installed from a wheel: no benchmarks/ beside it
    assert main(["bench", "--synthetic"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "benchmark harness of a checkout" in err


def test_live_modes_refuse_to_run_on_several_ranks(tiny, tmp_path, monkeypatch, capsys):
    from mlx_mangaocr.core.ranks import Ranks

    class TwoRanks:
        def rank(self):
            return 0

        def size(self):
            return 2

    monkeypatch.setattr(Ranks, "init", classmethod(lambda cls: cls(TwoRanks())))
    assert main(["--watch", str(tmp_path), "--model", str(tiny.folder)]) == 2
    assert "run watch as one process" in capsys.readouterr().err
    assert main(["--pages", str(IMAGES[0]), "--model", str(tiny.folder)]) == 2
    assert "run pages as one process" in capsys.readouterr().err


def test_an_error_after_the_bar_has_a_line_of_its_own(capsys):
    from mlx_mangaocr.frontends.cli.common import PrintingCallback

    report = PrintingCallback(show=True)
    report.on_start("vol", 3, 0)
    report.on_advance(1)
    report.on_error("vol: p2.png is not an image")
    err = capsys.readouterr().err
    assert "\nerror: vol: p2.png is not an image\n" in err and "error: \n" not in err


def test_a_last_line_without_its_newline_in_file_is_kept(tiny, tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text('{"path": "mine", "text": "kept"}\nnotes without a newline')
    assert main([str(IMAGES[0]), "--model", str(tiny.folder), "--decoding", "greedy", "--jsonl", "--output",
                 str(out)]) == 0  # fmt: skip
    lines = out.read_text().splitlines()
    assert lines[:2] == ['{"path": "mine", "text": "kept"}', "notes without a newline"] and len(lines) == 3
    (tmp_path / "bad.jsonl").write_bytes(b"\xff\xfe no newline")
    assert main([str(IMAGES[0]), "--model", str(tiny.folder), "--jsonl", "--output", str(tmp_path / "bad.jsonl")]) == 2
    assert (tmp_path / "bad.jsonl").read_bytes() == b"\xff\xfe no newline"
