"""Accuracy on labelled crops: character error rate and exact match, as manga OCR is measured.

``normalization`` says how the texts are made comparable, ``scores`` counts edits and sums them up,
``run`` reads datasets through one or several models with continuous batching."""

from .normalization import NORMALIZERS, normalizer
from .run import EvalCallback, evaluate
from .scores import LENGTH_BUCKETS, SampleScore, Scores, edit_distance

__all__ = ["LENGTH_BUCKETS", "NORMALIZERS", "EvalCallback", "SampleScore", "Scores", "edit_distance", "evaluate",
           "normalizer"]  # fmt: skip
