"""python -m convert SOURCE [-o OUT] [--dtype ...] [--force]: see ``mlx_mangaocr.convert``."""

import sys

from mlx_mangaocr.frontends.convert import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m convert"))
