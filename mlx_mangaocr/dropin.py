"""``mlx_mangaocr.dropin``: the drop-in at its first path. This name is ``frontends.dropin`` itself
(one module object), so ``mlx_mangaocr.dropin.post_process = f`` changes what ``MangaOcr`` returns."""

import sys

from .frontends import dropin as _dropin

sys.modules[__name__] = _dropin
