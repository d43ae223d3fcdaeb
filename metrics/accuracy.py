"""Closed-set accuracy (with its parse-failure rate) and open-answer exact match / token recall.

Closed questions (yes/no, modality, diagnosis options): a free-text generation is mapped to one
option, in the spirit of MedVInT's evaluation (same group as RadFM), and compared with the option
the reference maps to. The rules, in order, on normalised text (lowercase, punctuation to spaces):

1. ``exact``: the generation is an option.
2. ``leading``: the generation starts with an option as whole words (``"yes, there is ..."``); the
   longest such option wins.
3. ``contained``: exactly one option occurs as a whole-word phrase in the generation, after
   dropping options that are part of a longer occurring option (``"viral pneumonia"`` over
   ``"pneumonia"``).
4. ``similarity``: the option with the highest ``difflib.SequenceMatcher`` ratio (MedVInT's rule),
   but only if that ratio reaches ``min_similarity`` (default 0.5); MedVInT takes the argmax
   whatever it is, which turns any answer into some option.

An answer that maps to no option is wrong and counts in ``parse_failure_rate``; nothing falls back
to a random choice. A closed question without options whose reference is not yes/no is scored by
normalised exact match. Open questions get ``exact_match`` (normalised) and ``token_recall`` (share
of the reference's distinct normalised tokens found in the generation, best reference). Each
record keeps the chosen option and the rule that chose it, so every decision can be audited.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from radbench.metrics import options as metric_options
from radbench.metrics.base import Metric, ScoreInput

YES_NO = ("yes", "no")
DEFAULT_MIN_SIMILARITY = 0.5


def normalise(text: str) -> str:
    text = text.lower().strip()
    text = re.sub(r"[^a-z0-9 ]+", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def _phrase(option: str) -> re.Pattern[str]:
    return re.compile(rf"(?<![a-z0-9]){re.escape(option)}(?![a-z0-9])")


def match_option(prediction: str, options: Sequence[str], min_similarity: float) -> tuple[str | None, str]:
    """The option a text chose and the rule that decided it; ``(None, reason)`` when none fits."""
    pred = normalise(prediction)
    norm: dict[str, str] = {}
    for option in options:
        norm.setdefault(normalise(option), option)
    norm.pop("", None)
    if not pred:
        return None, "empty"
    if not norm:
        return None, "no_options"
    if pred in norm:
        return norm[pred], "exact"
    leading = [n for n in norm if re.match(rf"{re.escape(n)}(?![a-z0-9])", pred)]
    if leading:
        return norm[max(leading, key=len)], "leading"
    contained = [n for n in norm if _phrase(n).search(pred)]
    maximal = [n for n in contained if not any(n != m and _phrase(n).search(m) for m in contained)]
    if len(maximal) == 1:
        return norm[maximal[0]], "contained"
    ratios = {n: difflib.SequenceMatcher(None, pred, n).ratio() for n in norm}
    best = max(norm, key=lambda n: ratios[n])  # first option on ties: stable, never random
    if ratios[best] >= min_similarity:
        return norm[best], "similarity"
    return None, "no_match" if len(maximal) < 2 else "ambiguous"


def token_recall(prediction: str, reference: str) -> float | None:
    ref = set(normalise(reference).split())
    if not ref:
        return None
    return len(ref & set(normalise(prediction).split())) / len(ref)


class Accuracy(Metric):
    group = "accuracy"
    ids = ("accuracy", "parse_failure_rate", "exact_match", "token_recall")
    lower_is_better = ("parse_failure_rate",)
    version = "2"

    SCHEMA = {"min_similarity": float}

    def __init__(self, min_similarity: float | None = None) -> None:
        args = metric_options.resolve(self.group, {"min_similarity": min_similarity}, self.SCHEMA)
        self.min_similarity = float(args.get("min_similarity", DEFAULT_MIN_SIMILARITY))

    def config(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "closed": "map generation to an option: exact > leading words > unique contained phrase > "
            "difflib ratio (MedVInT) if >= min_similarity, else parse failure (wrong)",
            "min_similarity": self.min_similarity,
            "closed_without_options": "normalised exact match (yes/no references use options yes, no)",
            "open": "exact_match (normalised) and token_recall (distinct reference tokens found), best reference",
            "normalisation": "lowercase, non-alphanumerics to spaces, collapse whitespace",
        }

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        return [self._closed(item) if item.answer_type == "closed" else self._open(item) for item in items]

    def _closed(self, item: ScoreInput) -> dict[str, Any]:
        options = item.options
        if not options and item.references and normalise(item.references[0]) in YES_NO:
            options = YES_NO
        refs = {normalise(r) for r in item.references}
        record: dict[str, Any] = {"exact_match": None, "token_recall": None}
        if not options:
            correct = normalise(item.prediction) in refs
            return {**record, "accuracy": float(correct), "parse_failure_rate": 0.0, "_rule": "exact_no_options"}
        targets = set()
        for ref in item.references:
            target, _ = match_option(ref, options, self.min_similarity)
            if target is not None:
                targets.add(target)
        chosen, rule = match_option(item.prediction, options, self.min_similarity)
        if not targets:
            # The dataset's answer is none of its options: the sample cannot be scored as closed-set.
            return {**record, "accuracy": None, "parse_failure_rate": None, "_choice": chosen,
                    "_rule": "reference_not_an_option"}
        return {**record, "accuracy": float(chosen in targets), "parse_failure_rate": float(chosen is None),
                "_choice": chosen, "_rule": rule}

    def _open(self, item: ScoreInput) -> dict[str, Any]:
        refs = list(item.references) or [""]
        pred = normalise(item.prediction)
        recalls = [r for r in (token_recall(item.prediction, ref) for ref in refs) if r is not None]
        return {
            "accuracy": None,
            "parse_failure_rate": None,
            "exact_match": float(pred in {normalise(r) for r in refs}),
            "token_recall": max(recalls) if recalls else None,
        }
