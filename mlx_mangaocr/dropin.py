"""``from mlx_mangaocr.dropin import MangaOcr``: the drop-in, kept at its first path (it lives in
``frontends.dropin``)."""

from .frontends.dropin import MangaOcr, post_process  # noqa: F401
