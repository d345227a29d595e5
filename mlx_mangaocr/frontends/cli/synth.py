"""``mlx-mangaocr synth OUT --count N``: labelled manga-style text crops for training, as manga-ocr
made most of its training data (its synthetic generator), drawn with Pillow.

mlx-mangaocr synth data/ --count 10000 --seed 1            # OUT/images/*.png and OUT/labels.jsonl
mlx-mangaocr synth data/ --count 48 --preview              # and OUT/preview.png, a contact sheet
mlx-mangaocr synth data/ --count 10000 --corpus lines.txt --backgrounds pages/ --fonts ~/fonts
mlx-mangaocr synth easy/ --count 20000 --plain             # black text on white only
"""

from __future__ import annotations

import os
import sys

from ...core.errors import MangaOcrError
from ...pipelines.synth import Synthesizer, generate
from . import common
from .common import PrintingCallback, error

EXIT = "Exit status: 0 written, 2 nothing could run (bad input, named on stderr)."


def build_parser():
    p = common.parser("synth", "Generate labelled manga-style text crops (synthetic training data) in OUT.")
    p.epilog = EXIT
    p.add_argument("out", metavar="OUT", help="output folder: OUT/images/*.png and OUT/labels.jsonl")
    p.add_argument("--count", type=int, required=True, metavar="N", help="how many samples")
    p.add_argument("--seed", type=common.non_negative_int, default=0,
                   help="the same seed gives the same samples (default 0)")  # fmt: skip
    p.add_argument("--fonts", nargs="+", metavar="DIR", help="font folders (default: the system's Japanese fonts)")
    p.add_argument(
        "--corpus",
        metavar="FILE",
        help="UTF-8 text, one source a line (default: phrases of wordfreq's Japanese words, CC BY-SA 4.0)",
    )
    p.add_argument("--backgrounds", metavar="DIR", help="page images to cut backgrounds from (default: drawn)")
    p.add_argument(
        "--model",
        help="keep labels to this model's vocab.txt (a folder or hub id; default: manga-ocr's character list)",
    )
    p.add_argument("--vertical", type=float, default=0.7, metavar="P", help="share of vertical text (default 0.7)")
    p.add_argument("--plain", action="store_true",
                   help="black text on white: no bubble, outline, shadow, background or furigana (an easy set, "
                        "for a model trained from random weights)")  # fmt: skip
    p.add_argument("--preview", action="store_true", help="also write OUT/preview.png, a contact sheet of 48 samples")
    p.add_argument("--workers", type=common.positive_int, default=min(4, os.cpu_count() or 1),
                   help="threads making samples; the output does not depend on it (default: up to 4)")  # fmt: skip
    p.add_argument("--force", action="store_true", help="write into a non-empty OUT that is not a synth output")
    common.add_progress(p)
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if args.count < 1:
        error(f"--count {args.count}: at least 1")
        return 2
    if not 0.0 <= args.vertical <= 1.0:
        error(f"--vertical {args.vertical}: a probability, from 0 to 1")
        return 2
    if args.plain and args.backgrounds:
        error("--plain draws on white: it takes no --backgrounds")
        return 2
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        error(f"OUT {args.out}: a file, expected a folder (new, empty, or a previous synth output)")
        return 2
    try:
        synth = Synthesizer(args.seed, args.fonts, args.corpus, args.backgrounds, args.model, args.vertical,
                            plain=args.plain)  # fmt: skip
        show = args.progress if args.progress is not None else args.count > 1 and sys.stderr.isatty()
        callback = PrintingCallback(show, unit="samples")
        generate(
            args.out,
            args.count,
            synth,
            args.workers,
            args.force,
            args.preview,
            callback,
            inputs=[args.corpus, args.backgrounds, *(args.fonts or [])],
        )
    except MangaOcrError as e:
        error(str(e))
        return 2
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} is as it was (the new set is made aside and moved in when whole)",
              file=sys.stderr)  # fmt: skip
        return 130
    print(f"synth: {args.count} samples in {args.out}", file=sys.stderr)
    return 0
