"""Edit distances and the figures built from them.

- CER (micro): total Levenshtein distance over total reference characters (code points).
- mean CER: the mean of the samples' own CERs. A reference that is empty after normalization adds
  the prediction's length to the edit total and nothing to the character total; its own CER is 0
  when the prediction is empty too, else 1.
- exact match: the share of samples whose prediction equals the reference.
- splits: by orientation (a crop taller than wide is vertical; a square one is horizontal) and by
  the normalized reference's length in code points (``LENGTH_BUCKETS``; ``0`` only when a
  reference is empty after normalization).
- confusions: from one minimal alignment of each pair (``rapidfuzz``'s edit operations): a
  substitution counts (reference char, predicted char), a deletion (char, ""), an insertion ("", char).

Edit distance is ``rapidfuzz`` (MIT, a compiled Levenshtein; the tests check it against a plain
dynamic program on random strings).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz.distance import Levenshtein

LENGTH_BUCKETS = (("1-5", 1, 5), ("6-15", 6, 15), ("16+", 16, None))
CONFUSIONS = 20  # the most frequent confusions a summary lists


def edit_distance(reference: str, prediction: str) -> int:
    """The Levenshtein distance (insertions, deletions, substitutions, each 1) in code points."""
    return Levenshtein.distance(reference, prediction)


def length_bucket(length: int) -> str:
    for name, low, high in LENGTH_BUCKETS:
        if length >= low and (high is None or length <= high):
            return name
    return "0"


@dataclass(frozen=True)
class SampleScore:
    """One sample's comparison, after normalization."""

    reference: str
    prediction: str
    distance: int
    vertical: bool

    @property
    def cer(self) -> float:
        if not self.reference:
            return 0.0 if not self.prediction else 1.0
        return self.distance / len(self.reference)

    @property
    def exact(self) -> bool:
        return self.reference == self.prediction


def score(reference: str, prediction: str, vertical: bool) -> SampleScore:
    return SampleScore(reference, prediction, edit_distance(reference, prediction), vertical)


@dataclass
class Sums:
    """The running sums of a set of samples (``add``), and their figures (``figures``)."""

    samples: int = 0
    distance: int = 0
    characters: int = 0
    exact: int = 0
    cer_sum: float = 0.0

    def add(self, s: SampleScore) -> None:
        self.samples += 1
        self.distance += s.distance
        self.characters += len(s.reference)
        self.exact += s.exact
        self.cer_sum += s.cer

    def figures(self) -> dict:
        """The figures of these samples; a figure without samples (or characters) is None."""
        n = self.samples
        return {
            "samples": n,
            "cer": self.distance / self.characters if self.characters else None,
            "mean_cer": self.cer_sum / n if n else None,
            "exact_match": self.exact / n if n else None,
            "edits": self.distance,
            "characters": self.characters,
        }


@dataclass
class Scores:
    """The running sums of one model's samples, and their summary."""

    total: Sums = field(default_factory=Sums)
    orientation: dict[str, Sums] = field(default_factory=lambda: {"vertical": Sums(), "horizontal": Sums()})
    lengths: dict[str, Sums] = field(default_factory=dict)
    confusions: Counter = field(default_factory=Counter)

    def add(self, s: SampleScore) -> None:
        self.total.add(s)
        self.orientation["vertical" if s.vertical else "horizontal"].add(s)
        self.lengths.setdefault(length_bucket(len(s.reference)), Sums()).add(s)
        if s.distance:
            for op in Levenshtein.editops(s.reference, s.prediction):
                ref = s.reference[op.src_pos] if op.tag != "insert" else ""
                pred = s.prediction[op.dest_pos] if op.tag != "delete" else ""
                self.confusions[(ref, pred)] += 1

    def summary(self) -> dict:
        """``samples``, ``cer``, ``mean_cer``, ``exact_match`` (fractions), ``edits``,
        ``characters``, ``by_orientation``, ``by_length`` and ``confusions``."""
        buckets = ["0"] * ("0" in self.lengths) + [name for name, _, _ in LENGTH_BUCKETS]
        top = sorted(self.confusions.items(), key=lambda kv: (-kv[1], kv[0]))[:CONFUSIONS]
        return {
            **self.total.figures(),
            "by_orientation": {k: v.figures() for k, v in self.orientation.items()},
            "by_length": {k: self.lengths.get(k, Sums()).figures() for k in buckets},
            "confusions": [{"reference": r, "prediction": p, "count": c} for (r, p), c in top],
        }
