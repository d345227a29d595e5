"""``python -m mlx_mangaocr.compat COMMAND`` and ``mlx_mangaocr.compat.install()``: the ``manga_ocr``
alias, kept at its first path (it lives in ``frontends.compat``)."""

from .frontends.compat import install, main, run  # noqa: F401

if __name__ == "__main__":
    main()
