"""Exceptions a caller can catch: one for bad input, one for a bad model."""


class MangaOcrError(Exception):
    """Base class of every error this library raises on purpose."""


class InvalidImageError(MangaOcrError, ValueError):
    """An image could not be read or is not something the model can take."""


class ModelLoadError(MangaOcrError, ValueError):
    """A model folder, hub repo or checkpoint is missing, broken or of another kind."""
