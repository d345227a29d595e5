"""Memory over a volume: once every page size has been seen, the RSS stays flat page after page.

A volume of pages of five sizes, a 700x4200 strip among them, cycling, is read as ``mlx-mangaocr
mokuro`` reads it (``read_library`` at the default page group, crop batch 16) in a process of its
own, which records its RSS after each page (``benchmarks.volume``). The warm-up is two periods of
the pages held together (a period is lcm(5 sizes, page group) pages, after which every size has
been read in every place of a group, the strip included); six periods follow, 40 pages in all at
group 1. No later page may leave the RSS higher than the highest of the warm-up by more than one
largest page's working set, argued from the settings: the page held as the README's memory formula
counts it, 10 bytes a pixel (Pillow's RGB at 4 bytes a pixel, its decoding copy, its grayscale copy
and array), and its detector input (the preprocessor's square, 3 float32 channels). A leak of
anything page-sized fails it (keeping each decoded page did: 944 MiB against a bound of 788), and
so would a pool that keeps what each new size frees.

The worker runs with glibc's mmap threshold fixed at its default of 128 KiB
(``MALLOC_MMAP_THRESHOLD_``), so that a freed page-sized buffer goes back to the system. Left
dynamic, glibc raises the threshold the first time it frees a large mapped block, and from then on
keeps freed page buffers in its heaps; when that happens depends on the threads' timing, and one CI
run saw it after the warm-up: a one-off step of 51 MiB, then back below the warm-up (the README
gives the figures). That is the allocator's retention, bounded by its peak, not growth; fixed, the
RSS counts what the process holds, which is what this test is about.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

from hostile import BYTES_PER_PIXEL
from oracle import record

from mlx_mangaocr.pipelines.pages.reader import PAGE_GROUP
from testing.pages import VOLUME_SIZES

ROOT = Path(__file__).resolve().parents[1]


def test_rss_stays_flat_over_a_volume(tiny, small_detector, tmp_path):
    group = PAGE_GROUP
    period = math.lcm(len(VOLUME_SIZES), group)
    warm = 2 * period  # pages 0 .. warm - 1
    pages = 8 * period
    out = tmp_path / "volume.json"
    command = [sys.executable, "-m", "benchmarks.volume", "--model", str(tiny.folder), "--detector",
               str(small_detector.folder), "--pages", str(pages), "--page-group", str(group), "--batch-size", "16",
               "--folder", str(tmp_path), "--out", str(out)]  # fmt: skip
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}  # glibc's default, not raised as it frees
    subprocess.run(command, cwd=ROOT, env=env, check=True, timeout=600)
    result = json.loads(out.read_text())
    assert not result["failed"] and result["crops"] > 0
    rss = result["rss_after_page_bytes"]
    assert len(rss) == pages

    side = json.loads((small_detector.folder / "preprocessor_config.json").read_text())["size"]
    detector_input = side["height"] * side["width"] * 3 * 4
    largest = max(w * h for w, h in VOLUME_SIZES) * BYTES_PER_PIXEL
    warmed = max(rss[:warm])
    bound = warmed + largest + detector_input
    later = max(rss[warm:])
    mib = 2**20
    record(
        "volume memory: RSS after warm-up, highest later, bound (MiB)",
        f"{warmed / mib:.0f}, {later / mib:.0f}, {bound / mib:.0f} ({pages} pages, group {group})",
    )
    assert later <= bound, (
        f"RSS grew past the warm-up's highest by {(later - warmed) / mib:.1f} MiB, more than one largest page's "
        f"{(largest + detector_input) / mib:.1f} MiB; after each page (MiB): {[round(r / mib) for r in rss]}"
    )
