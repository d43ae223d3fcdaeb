"""Corpus BLEU-1..4 in the pycocoevalcap convention (R2Gen, RadEval).

Whitespace tokens, case kept, n-gram counts clipped per sentence against the references (maximum
count over references), a hypothesis with fewer than n tokens contributes 0 (not 1, as nltk's
``corpus_bleu`` does) to the n-gram denominator, closest reference length for the brevity penalty
(ties to the shorter), and coco's constants ``tiny=1e-15``, ``small=1e-9``, multiplied in coco's order
so the result equals ``pycocoevalcap.bleu.Bleu(4).compute_score`` (a test checks it to 1e-9 on
random inputs with empty and short hypotheses).

Each sample stores its sufficient statistics (``_bleu``), so the corpus score of any subset, and so
every bootstrap resample, is a few sums. The per-sample ``bleuN`` values are coco's own
sentence-level scores: the same arithmetic on one sentence, whose only smoothing is the tiny/small
constants ("coco-sentence" smoothing; a sentence without any matching n-gram gets ~0, not nltk's
method1 value). They exist for paired tests, not as the reported number.
"""

from __future__ import annotations

from collections import Counter
from itertools import chain
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from radbench.metrics import cache, options, parallel
from radbench.metrics.base import Metric, ScoreInput

TINY = 1e-15
SMALL = 1e-9
MAX_N = 4
PARALLEL_MIN_ITEMS = 20_000  # below this, worker start-up costs more than the work


def _ngrams(tokens: list[str]) -> Counter[tuple[str, ...]]:
    """Counts of every 1- to 4-gram in one counter (an n-gram's order is its length)."""
    return Counter(chain.from_iterable(zip(*(tokens[i:] for i in range(n))) for n in range(1, MAX_N + 1)))


def _closest_ref_len(hyp_len: int, ref_lens: list[int]) -> int:
    return min(ref_lens, key=lambda r: (abs(r - hyp_len), r))


def sufficient_stats(prediction: str, references: Sequence[str]) -> dict[str, Any]:
    """Clipped matches and guesses per order, hypothesis length and closest reference length."""
    hyp = prediction.split()
    refs = [r.split() for r in references] or [[]]
    max_ref = _ngrams(refs[0])
    for ref in refs[1:]:
        max_ref |= _ngrams(ref)  # Counter union keeps the maximum count
    matches = [0] * MAX_N
    for gram, count in _ngrams(hyp).items():
        ref_count = max_ref.get(gram)
        if ref_count:
            matches[len(gram) - 1] += min(count, ref_count)
    return {
        "hyp_len": len(hyp),
        "ref_len": _closest_ref_len(len(hyp), [len(r) for r in refs]),
        "match": matches,
        "total": [max(0, len(hyp) - n + 1) for n in range(1, MAX_N + 1)],
    }


def bleu_from_sums(match: np.ndarray, total: np.ndarray, hyp_len: np.ndarray, ref_len: np.ndarray) -> np.ndarray:
    """BLEU-1..4 from summed statistics; arrays may carry a leading batch axis (bootstrap draws).

    ``match``/``total`` have shape ``(..., 4)``; ``hyp_len``/``ref_len`` shape ``(...)``. Returns ``(..., 4)``.
    Same operations in the same order as coco's ``BleuScorer.compute_score``.
    """
    precision = (match + TINY) / (total + SMALL)
    geometric = np.cumprod(precision, axis=-1) ** (1.0 / np.arange(1, MAX_N + 1))
    ratio = (hyp_len + TINY) / (ref_len + SMALL)
    with np.errstate(over="ignore", divide="ignore"):
        brevity = np.where(ratio < 1, np.exp(1 - 1 / ratio), 1.0)
    return geometric * brevity[..., None]


def _stats_chunk(pairs: list[tuple[str, tuple[str, ...]]]) -> list[dict[str, Any]]:
    return [sufficient_stats(p, r) for p, r in pairs]


class Bleu(Metric):
    group = "bleu"
    ids = ("bleu1", "bleu2", "bleu3", "bleu4")
    version = "1"

    SCHEMA = {"cache": options.parse_bool}

    def __init__(self, cache: bool | None = None) -> None:
        args = options.resolve(self.group, {"cache": cache}, self.SCHEMA)
        self._cache = args.get("cache", True)

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
        store = cache.open_store(self.group, self.config(), self._cache)
        pairs = [(item.prediction, tuple(item.references)) for item in items]

        def compute(indices: list[int]) -> list[dict[str, Any]]:
            todo = [pairs[i] for i in indices]
            return parallel.chunked_map(_stats_chunk, todo, min_items=PARALLEL_MIN_ITEMS)

        all_stats = cache.cached_json(store, [[p, list(r)] for p, r in pairs], compute)
        match, total, hyp, ref = self._arrays([{"_bleu": s} for s in all_stats])
        sentence = bleu_from_sums(match, total, hyp, ref)
        return [
            {**{f"bleu{n}": float(row[n - 1]) for n in range(1, MAX_N + 1)}, "_bleu": stats}
            for row, stats in zip(sentence, all_stats)
        ]

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
        return self.resampler(metric_id, records)(weights)

    def resampler(self, metric_id: str, records: Sequence[dict[str, Any]]) -> Callable[[np.ndarray], np.ndarray]:
        """The n-gram count arrays are built once; each block of resamples is then one matrix product.

        The counts and weights are whole numbers, so the sums are exact in any order.
        """
        stacked = np.column_stack(self._arrays(records))  # match (4), total (4), hyp, ref
        n = int(metric_id[-1])

        def many(weights: np.ndarray) -> np.ndarray:
            sums = weights @ stacked
            return bleu_from_sums(sums[:, :MAX_N], sums[:, MAX_N : 2 * MAX_N], sums[:, -2], sums[:, -1])[:, n - 1]

        return many


def corpus_bleu(predictions: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Convenience: BLEU-1..4 of a whole corpus (used by tests and benchmarks)."""
    metric = Bleu(cache=False)
    records = metric.score([ScoreInput(str(i), p, tuple(r)) for i, (p, r) in enumerate(zip(predictions, references))])
    return [metric.aggregate(f"bleu{n}", records) or 0.0 for n in range(1, MAX_N + 1)]
