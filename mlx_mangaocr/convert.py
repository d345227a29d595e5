"""``python -m mlx_mangaocr.convert`` and ``mlx_mangaocr.convert.convert(source, output)``: the
converter at its first path. Imported, this name is ``frontends.convert`` itself (one module object)."""

import sys

from .frontends import convert as _convert

if __name__ == "__main__":
    sys.exit(_convert.main())
else:
    sys.modules[__name__] = _convert
