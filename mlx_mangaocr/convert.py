"""``python -m mlx_mangaocr.convert`` and ``mlx_mangaocr.convert.convert(source, output)``: the
converter, kept at its first path (it lives in ``frontends.convert``)."""

import sys

from .frontends.convert import convert, default_output, main, model_kind  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
