"""Closed-set accuracy: is the generated answer the right option?

A free-text generation is mapped to one option before it is compared with the reference, in the
convention of MedVInT's evaluation (same group as RadFM): the option whose text is most similar to
the generation (``difflib.SequenceMatcher`` ratio) after normalisation, with an exact or leading
match taking precedence. Open questions without options are scored by normalised exact match. The
per-sample record keeps the matched option and the rule that matched it, so a reader can audit
every decision; nothing falls back to a random choice.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Sequence

from radbench.metrics.base import Metric, ScoreInput

YES_NO = ("yes", "no")


def normalise(text: str) -> str:
    text = text.lower().strip()
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def match_option(prediction: str, options: Sequence[str]) -> tuple[str | None, str]:
    """The option a generation chose, and how it was decided (``exact``/``leading``/``similarity``)."""
    pred = normalise(prediction)
    norm = {normalise(o): o for o in options}
    if not pred:
        return None, "empty"
    if pred in norm:
        return norm[pred], "exact"
    leading = [o for n, o in norm.items() if n and re.match(rf"{re.escape(n)}\b", pred)]
    if len(leading) == 1:
        return leading[0], "leading"
    best = max(norm, key=lambda n: (difflib.SequenceMatcher(None, pred, n).ratio(), n))
    return norm[best], "similarity"


class Accuracy(Metric):
    group = "accuracy"
    ids = ("accuracy",)
    version = "1"

    def config(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "closed": "map generation to an option: exact > leading word > difflib ratio (MedVInT)",
            "open": "normalised exact match",
            "normalisation": "lowercase, punctuation to spaces, collapse whitespace",
        }

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            options = item.options
            if not options and item.answer_type == "closed" and normalise(item.references[0]) in YES_NO:
                options = YES_NO
            if options:
                chosen, rule = match_option(item.prediction, options)
                correct = chosen is not None and normalise(chosen) in {normalise(r) for r in item.references}
                out.append({"accuracy": float(correct), "_choice": chosen, "_rule": rule})
            else:
                correct = normalise(item.prediction) in {normalise(r) for r in item.references}
                out.append({"accuracy": float(correct), "_rule": "exact"})
        return out
