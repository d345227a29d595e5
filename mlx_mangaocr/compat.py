"""``python -m mlx_mangaocr.compat COMMAND`` and ``mlx_mangaocr.compat.install()``: the ``manga_ocr``
alias at its first path. Imported, this name is ``frontends.compat`` itself (one module object)."""

import sys

from .frontends import compat as _compat

if __name__ == "__main__":
    _compat.main()
else:
    sys.modules[__name__] = _compat
