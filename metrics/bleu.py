"""Corpus BLEU-1..4 in the pycocoevalcap convention (R2Gen, RadEval).

Whitespace tokens, n-gram counts clipped per sentence against the references, a hypothesis with
fewer than n tokens contributes 0 (not 1, as nltk's ``corpus_bleu`` does) to the n-gram denominator,
closest reference length for the brevity penalty, and coco's constants ``tiny=1e-15``,
``small=1e-9``. Each sample stores its sufficient statistics, so the corpus score and its bootstrap
are a few sums. The per-sample ``bleuN`` values are coco's own sentence-level scores (same
arithmetic on one sentence, "coco-sentence" smoothing via tiny/small), for paired tests.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from radbench.metrics.base import Metric, ScoreInput

TINY = 1e-15
SMALL = 1e-9
MAX_N = 4


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _closest_ref_len(hyp_len: int, ref_lens: list[int]) -> int:
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def sufficient_stats(prediction: str, references: Sequence[str]) -> dict[str, Any]:
    hyp = prediction.split()
    refs = [r.split() for r in references] or [[]]
    stats: dict[str, Any] = {"hyp_len": len(hyp), "ref_len": _closest_ref_len(len(hyp), [len(r) for r in refs])}
    matches, totals = [], []
    for n in range(1, MAX_N + 1):
        hyp_counts = _ngrams(hyp, n)
        max_ref: Counter[tuple[str, ...]] = Counter()
        for ref in refs:
            for gram, count in _ngrams(ref, n).items():
                max_ref[gram] = max(max_ref[gram], count)
        matches.append(sum(min(c, max_ref[g]) for g, c in hyp_counts.items()))
        totals.append(max(0, len(hyp) - n + 1))
    stats["match"] = matches
    stats["total"] = totals
    return stats


def bleu_from_sums(match: np.ndarray, total: np.ndarray, hyp_len: np.ndarray, ref_len: np.ndarray) -> np.ndarray:
    """BLEU-1..4 from summed statistics; arrays may carry a leading batch axis (bootstrap draws).

    ``match``/``total`` have shape ``(..., 4)``; ``hyp_len``/``ref_len`` shape ``(...)``. Returns ``(..., 4)``.
    """
    precision = (match + TINY) / (total + SMALL)
    log_cum = np.cumsum(np.log(precision), axis=-1) / np.arange(1, MAX_N + 1)
    ratio = (hyp_len + TINY) / (ref_len + SMALL)
    brevity = np.where(ratio < 1, np.exp(1 - 1 / np.maximum(ratio, TINY)), 1.0)
    return np.exp(log_cum) * brevity[..., None]


class Bleu(Metric):
    group = "bleu"
    ids = ("bleu1", "bleu2", "bleu3", "bleu4")
    version = "1"

    def config(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "convention": "pycocoevalcap",
            "level": "corpus",
            "tokenizer": "whitespace",
            "lowercase": False,
            "ref_length": "closest",
            "per_sample": "coco-sentence (tiny=1e-15, small=1e-9)",
        }

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            stats = sufficient_stats(item.prediction, item.references)
            sentence = bleu_from_sums(
                np.array(stats["match"], float),
                np.array(stats["total"], float),
                np.array(stats["hyp_len"], float),
                np.array(stats["ref_len"], float),
            )
            record: dict[str, Any] = {f"bleu{n}": float(sentence[n - 1]) for n in range(1, MAX_N + 1)}
            record["_bleu"] = stats
            out.append(record)
        return out

    @staticmethod
    def _arrays(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, ...]:
        match = np.array([r["_bleu"]["match"] for r in records], float).reshape(-1, MAX_N)
        total = np.array([r["_bleu"]["total"] for r in records], float).reshape(-1, MAX_N)
        hyp = np.array([r["_bleu"]["hyp_len"] for r in records], float)
        ref = np.array([r["_bleu"]["ref_len"] for r in records], float)
        return match, total, hyp, ref

    def aggregate(self, metric_id: str, records: Sequence[dict[str, Any]]) -> float | None:
        if not records:
            return None
        match, total, hyp, ref = self._arrays(records)
        n = int(metric_id[-1])
        return float(bleu_from_sums(match.sum(0), total.sum(0), hyp.sum(), ref.sum())[n - 1])

    def aggregate_many(self, metric_id: str, records: Sequence[dict[str, Any]], weights: np.ndarray) -> np.ndarray:
        """Corpus BLEU of each resample from weighted sums of the per-sample n-gram statistics."""
        match, total, hyp, ref = self._arrays(records)
        n = int(metric_id[-1])
        return bleu_from_sums(weights @ match, weights @ total, weights @ hyp, weights @ ref)[:, n - 1]


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Convenience: BLEU-1..4 of a whole corpus (used by tests and benchmarks)."""
    metric = Bleu()
    records = metric.score([ScoreInput(str(i), p, tuple(r)) for i, (p, r) in enumerate(zip(predictions, references))])
    return [metric.aggregate(f"bleu{n}", records) or 0.0 for n in range(1, MAX_N + 1)]
