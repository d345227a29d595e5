"""What real, hostile manga libraries hold, made on demand for the tests: archives with encrypted,
unsupported, duplicated or bomb members, names that are not UTF-8, links that loop, unreadable
folders, garbage caches; and the means to test them as root (the permission bypass dropped)."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import signal
import struct
import subprocess
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

from PIL import Image

from testing.pages import make_page

CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _capabilities():
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    return libc, header, data


def drop_permission_bypass() -> int | None:
    """As root, drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH from this thread's effective set,
    so file permissions apply as to anyone else; returns what to give to ``restore``."""
    if os.geteuid() != 0:
        return None
    libc, header, data = _capabilities()
    saved = data[0].effective
    data[0].effective &= ~((1 << CAP_DAC_OVERRIDE) | (1 << CAP_DAC_READ_SEARCH))
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    return saved


def restore_permission_bypass(saved: int | None) -> None:
    if saved is None:
        return
    libc, header, data = _capabilities()
    data[0].effective = saved
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


@contextlib.contextmanager
def permissions_apply():
    """Tests run as root, which reads anything: inside this block, it does not."""
    saved = drop_permission_bypass()
    try:
        yield
    finally:
        restore_permission_bypass(saved)


@contextlib.contextmanager
def within(seconds: int):
    """Fail (TimeoutError) instead of hanging when the block runs longer than ``seconds``."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds} s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def page_png(seed: int, width: int = 600, height: int = 840) -> bytes:
    buf = io.BytesIO()
    make_page(seed, width=width, height=height).image.save(buf, format="PNG")
    return buf.getvalue()


def make_volume(folder: Path, count: int = 2, start: int = 0, prefix: str = "p") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"{prefix}{start + i}.png").write_bytes(page_png(start + i))
    return folder


def patch_member(archive: Path, name: str, *, flags: int = 0, method: int | None = None,
                 raw_name: bytes | None = None) -> None:  # fmt: skip
    """Rewrite a member's headers in place (local and central): OR ``flags`` into its flag bits,
    set its compression ``method``, or replace its name by ``raw_name`` (same length, no UTF-8 flag)."""
    data = bytearray(archive.read_bytes())
    encoded = name.encode()
    for signature, flag_at, method_at, name_len_at, name_at in ((b"PK\x03\x04", 6, 8, 26, 30),
                                                               (b"PK\x01\x02", 8, 10, 28, 46)):  # fmt: skip
        at = data.find(signature)
        while at >= 0:
            length = struct.unpack_from("<H", data, at + name_len_at)[0]
            if bytes(data[at + name_at : at + name_at + length]) == encoded:
                flag = struct.unpack_from("<H", data, at + flag_at)[0] | flags
                if raw_name is not None:
                    assert len(raw_name) == length
                    data[at + name_at : at + name_at + length] = raw_name
                    flag &= ~0x800
                struct.pack_into("<H", data, at + flag_at, flag)
                if method is not None:
                    struct.pack_into("<H", data, at + method_at, method)
            at = data.find(signature, at + 4)
    archive.write_bytes(bytes(data))


def tree_digest(root: Path, suffixes=(".png", ".jpg", ".jpeg", ".cbz", ".zip", ".webp")) -> dict[bytes, str]:
    """Every input file under ``root`` (by suffix, links not followed) and the SHA-256 of its bytes."""
    out = {}
    for folder, _, files in os.walk(os.fsencode(root)):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.splitext(name)[1].decode("latin-1").lower() in suffixes and not os.path.islink(path):
                with open(path, "rb") as f:
                    out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def exif_rotated_jpeg(seed: int) -> tuple[bytes, Image.Image]:
    """A page stored sideways with EXIF orientation 6 (turn 90 degrees clockwise to view), and the
    page as a viewer shows it."""
    upright = make_page(seed, width=600, height=840).image.convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera writes, 840x600
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    data = buf.getvalue()
    return data, Image.open(io.BytesIO(data)).transpose(Image.Transpose.ROTATE_270)


def zip_of(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def zip_bomb(path: Path, inflated: int, page: bytes) -> Path:
    """A small archive whose first member inflates to ``inflated`` bytes of zeros, then a real page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("000.png", "w", force_zip64=True) as f:
            block = bytes(2**20)
            for _ in range(inflated // len(block)):
                f.write(block)
        z.writestr("001.png", page)
    return path


def run_measured(command: list[str], env: dict, timeout: float) -> tuple[int, float, str, float]:
    """Run ``command`` (one that calls ``write_peak`` at exit, as ``NO_BYPASS`` does): its exit
    status, its own peak RSS in MiB, its stderr and the seconds it took. A run past ``timeout`` is
    killed and raises ``TimeoutError`` (a hang)."""
    with tempfile.TemporaryFile() as err, tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        env = {**env, "HOSTILE_PEAK_FILE": str(peak_file)}
        began = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=err)
        while True:
            pid, status, _ = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - began > timeout:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise TimeoutError(f"{command[:4]}... still running after {timeout} s")
            time.sleep(0.05)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - began
        err.seek(0)
        peak = int(peak_file.read_text()) / 1024 if peak_file.exists() else float("nan")
        return proc.returncode, peak, err.read().decode("utf-8", "backslashreplace"), seconds


def blank_png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), "white").save(buf, format="PNG")
    return buf.getvalue()


def build_hostile_library(lib: Path) -> dict[str, list[str]]:
    """Good volumes beside every hostile case of issue 20, in one library. Returns what a run with
    ``--max-pixels 4000000 --max-member-mb 64`` must give: ``complete`` (volume -> page count, as
    ``.mokuro`` paths relative to ``lib``), ``unwritten`` (volumes that get no ``.mokuro``) and
    ``errors`` (what stderr must name). Leave the permissions with ``restore_library``."""
    complete: dict[str, int] = {}
    errors: list[str] = []
    good = lib / "Good"
    make_volume(good / "folder-vol", 2)
    complete["Good/folder-vol.mokuro"] = 2
    zip_of(good / "archive-vol.cbz", {"a/1.png": page_png(3), "a/2.png": page_png(4)})
    complete["Good/archive-vol.cbz"[:-4] + ".mokuro"] = 2
    (good / "exif-vol").mkdir()
    (good / "exif-vol" / "1.jpg").write_bytes(exif_rotated_jpeg(5)[0])
    complete["Good/exif-vol.mokuro"] = 1
    make_volume(good / "big-vol", 1)
    (good / "big-vol" / "p9.png").write_bytes(blank_png(2000, 2000))  # 4.0 Mpx: at the pixel limit, read
    complete["Good/big-vol.mokuro"] = 2
    # archive members: a bomb, a page over the pixel limit, encrypted, unknown method, duplicates
    zip_bomb(lib / "Bomb" / "bomb.cbz", 300 * 2**20, page_png(6))
    complete["Bomb/bomb.mokuro"] = 1
    errors.append("000.png: the member inflates to 314,572,800 bytes, over the 67,108,864-byte limit")
    zip_of(lib / "Bomb" / "pixels.cbz", {"1.png": blank_png(5000, 5000), "2.png": page_png(7)})
    complete["Bomb/pixels.mokuro"] = 1
    errors.append("pixels.cbz: 1.png is over the 4,000,000-pixel limit")
    hostile = zip_of(lib / "Zips" / "hostile.cbz", {"1.png": page_png(8), "2.png": page_png(8), "3.png": page_png(8)})
    patch_member(hostile, "2.png", flags=0x1)
    patch_member(hostile, "3.png", method=99)
    with zipfile.ZipFile(hostile, "a") as z, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z.writestr("1.png", page_png(9))  # a duplicate name
    complete["Zips/hostile.mokuro"] = 1
    errors += ["2.png: the member is encrypted", "3.png: the member cannot be inflated here",
               "member name(s) appear more than once"]  # fmt: skip
    # names that are not UTF-8
    title = os.path.join(os.fsencode(lib), b"SJIS", "マンガ".encode("cp932"))
    vol = os.path.join(title, b"vol")
    os.makedirs(vol)
    for name, seed in ((SJIS_PAGE + b"1.png", 10), (b"\xff2.png", 11)):
        with open(os.path.join(vol, name), "wb") as f:
            f.write(page_png(seed))
    complete[SJIS_MOKURO] = 2
    # links that loop
    make_volume(lib / "Loops" / "T" / "vol", 1, start=12)
    (lib / "Loops" / "T" / "a").mkdir()
    (lib / "Loops" / "T" / "a" / "up").symlink_to(lib)
    (lib / "Loops" / "T" / "b").mkdir()
    (lib / "Loops" / "T" / "b" / "up").symlink_to(lib / "Loops")
    complete["Loops/T/vol.mokuro"] = 1
    # two volumes, one .mokuro
    make_volume(lib / "Clash" / "vol", 1, start=13)
    zip_of(lib / "Clash" / "vol.cbz", {"1.png": page_png(13)})
    unwritten = ["Clash/vol.mokuro"]
    errors.append("would both write")
    # a garbage cache, a garbage .mokuro, a stale temporary file
    make_volume(lib / "Cache" / "vol", 2, start=14)
    (lib / "Cache" / "vol.mokuro-cache" / "sub").mkdir(parents=True)
    for name, bad in (("p14.png", "null"), ("p15.png", "[1, 2]")):
        digest = hashlib.sha1(name.encode()).hexdigest()[:16]
        (lib / "Cache" / "vol.mokuro-cache" / f"{digest}.json").write_text(bad)
    complete["Cache/vol.mokuro"] = 2
    make_volume(lib / "Garbage" / "vol", 1, start=16)
    (lib / "Garbage" / "vol.mokuro").write_bytes(b"\x89PNG garbage")
    complete["Garbage/vol.mokuro"] = 1
    make_volume(lib / "Stale" / "vol", 1, start=17)
    (lib / "Stale" / ".vol.mokuro.otherhost.4242.tmp").write_text("{")
    complete["Stale/vol.mokuro"] = 1
    # what cannot be read or written
    make_volume(lib / "RO" / "vol", 1, start=18)
    unwritten.append("RO/vol.mokuro")
    errors.append("RO/vol: cannot write beside the volume")
    make_volume(lib / "Locked" / "vol", 1, start=19)
    errors.append(f"cannot list {lib / 'Locked'}: Permission denied")
    make_volume(lib / "Perm" / "vol", 2, start=20)
    make_volume(lib / "Perm" / "vol" / "ch2", 1, start=22)
    complete["Perm/vol.mokuro"] = 1
    errors += [f"cannot open {lib / 'Perm' / 'vol' / 'p21.png'}: Permission denied",
               f"cannot list {lib / 'Perm' / 'vol' / 'ch2'}: Permission denied"]  # fmt: skip
    (lib / "Broken").mkdir()
    (lib / "Broken" / "bad.cbz").write_bytes(b"PK\x03\x04 not a zip")
    unwritten.append("Broken/bad.mokuro")
    errors.append("bad.cbz is not a readable zip archive")
    (lib / "Failed" / "vol").mkdir(parents=True)
    (lib / "Failed" / "vol" / "1.png").write_bytes(page_png(23)[:300])
    complete["Failed/vol.mokuro"] = 0
    errors.append("1.png could not be decoded (truncated or corrupt?)")
    (lib / "RO").chmod(0o555)
    (lib / "Locked").chmod(0)
    (lib / "Perm" / "vol" / "p21.png").chmod(0)
    (lib / "Perm" / "vol" / "ch2").chmod(0)
    return {"complete": complete, "unwritten": unwritten, "errors": errors}


def restore_library(lib: Path) -> None:
    for path in (lib / "RO", lib / "Locked", lib / "Perm" / "vol" / "ch2"):
        path.chmod(0o755)
    (lib / "Perm" / "vol" / "p21.png").chmod(0o644)


# a page held, as the README's memory formula counts it: Pillow's RGB (4 bytes a pixel), its decoding
# copy (4), its grayscale copy and array (2)
BYTES_PER_PIXEL = 10
SJIS_PAGE = "ページ".encode("cp932")
SJIS_MOKURO = os.fsdecode(os.path.join(b"SJIS", "マンガ".encode("cp932"), b"vol.mokuro"))  # the path as the OS has it

# The command-line program with the permission bypass dropped (tests run as root), writing its own
# peak RSS at exit (see run_measured): python -c NO_BYPASS ARGS...
NO_BYPASS = (
    "import atexit, os, runpy, sys\nfrom hostile import drop_permission_bypass, write_peak\n"
    "drop_permission_bypass()\natexit.register(write_peak)\n"
    "sys.argv = ['mlx-mangaocr', *sys.argv[1:]]\nrunpy.run_module('mlx_mangaocr', run_name='__main__')\n"
)


def write_peak() -> None:
    """Write this process's peak RSS (VmHWM, in KiB) where ``run_measured`` reads it. Not
    ``getrusage``: its ``ru_maxrss`` keeps the RSS of the process before ``exec``, a copy of the
    (large) test process that spawned it."""
    path = os.environ.get("HOSTILE_PEAK_FILE")
    if path:
        status = Path("/proc/self/status").read_text()
        Path(path).write_text(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
