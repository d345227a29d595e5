"""``mlx-mangaocr export DIR -o HF_DIR``: an MLX model folder (converted, or fine-tuned here) back to
the Hugging Face layout that upstream manga-ocr and transformers load.

mlx-mangaocr export ~/.cache/mlx-mangaocr/manga-ocr-base -o manga-ocr-hf
mlx-mangaocr export my-finetuned -o my-finetuned-hf --force     # replace an existing HF_DIR
"""

from __future__ import annotations

import sys

from ...core.errors import MangaOcrError
from ...core.names import display_name
from . import common

PROG = "mlx-mangaocr export"
EXIT = "Exit status: 0 written, 2 nothing written (the reason on stderr)."


def build_parser():
    p = common.parser(
        "export",
        "Write an OCR model folder (converted MLX, or Hugging Face) as the Hugging Face VisionEncoderDecoderModel "
        "folder that manga-ocr (MangaOcr(HF_DIR)) and transformers load: model.safetensors, config.json, "
        "generation_config.json, the tokenizer and preprocessor files. Quantized models cannot be exported.",
    )
    p.epilog = EXIT
    p.add_argument("source", metavar="DIR", help="the model folder (a converted MLX folder, or a Hugging Face one)")
    p.add_argument("-o", "--output", required=True, metavar="HF_DIR", help="the folder to write (new or empty)")
    p.add_argument("--force", action="store_true", help="replace HF_DIR when it exists and is not empty")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from ...loading.export import export_hf

    try:
        out = export_hf(args.source, args.output, overwrite=args.force)
    except (MangaOcrError, FileExistsError, ValueError) as e:
        return _fail(str(e))
    except OSError as e:
        where = f"{display_name(e.filename)}: " if e.filename else ""
        return _fail(f"cannot export to {display_name(args.output)}: {where}{e.strerror or e}")
    print(out)
    return 0


def _fail(message: str) -> int:
    """One line on stderr, as argparse reports a bad argument; exit status 2."""
    print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)
    return 2
