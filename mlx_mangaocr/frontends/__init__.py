"""Layer 5, front ends: the command line and its subcommands, watch, clipboard, the ``MangaOcr``
drop-in and the ``manga_ocr`` alias. Nothing below imports them."""
