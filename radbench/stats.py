"""Bootstrap confidence intervals over per-sample records, clustered by patient or study.

Several questions about one study are not independent, so the bootstrap resamples clusters (patient
id, else study id, else the sample itself) and re-applies the metric's own aggregate to each
resample: the interval is of the number actually reported (corpus BLEU included), not of a proxy.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, TypeVar

import numpy as np

DEFAULT_ITERATIONS = 1000
DEFAULT_LEVEL = 0.95
K = TypeVar("K")


def cluster_draws(clusters: Sequence[str], iterations: int, seed: int) -> np.ndarray:
    """Row indices of ``iterations`` cluster-bootstrap resamples, one resample per row.

    Each resample draws as many clusters as there are, with replacement, and takes all rows of each
    drawn cluster. Without repeated clusters every resample has ``n`` rows; with them, sizes vary and
    shorter resamples are padded with ``-1`` (see :func:`apply_draws`).
    """
    rng = np.random.default_rng(seed)
    if len(set(map(str, clusters))) == len(clusters):  # one row per cluster: skip the sort below
        return rng.integers(0, len(clusters), size=(iterations, len(clusters)))
    labels, inverse = np.unique(np.asarray(clusters, dtype=object).astype(str), return_inverse=True)
    n_clusters = len(labels)
    members = [np.flatnonzero(inverse == c) for c in range(n_clusters)]
    picks = rng.integers(0, n_clusters, size=(iterations, n_clusters))
    rows = [np.concatenate([members[c] for c in pick]) for pick in picks]
    return _pad(rows)


def _pad(rows: list[np.ndarray]) -> np.ndarray:
    """Stack ragged resamples into one matrix, padding with ``-1``."""
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def draw_weights(draws: np.ndarray, n: int) -> np.ndarray:
    """Resamples as weights: ``w[b, i]`` = how many times row ``i`` appears in resample ``b``.

    Every aggregate radbench uses is a function of weighted sums (means, corpus BLEU's n-gram
    counts), so one matrix product evaluates all resamples at once, clustered or not.
    """
    out = np.empty((draws.shape[0], n), dtype=np.float64)
    padded = bool((draws < 0).any())
    for b, row in enumerate(draws):  # one short bincount per resample beats one over the whole block
        out[b] = np.bincount(row[row >= 0] if padded else row, minlength=n)
    return out


def resample_all(
    statistics: Mapping[K, Callable[[np.ndarray], np.ndarray]],
    n: int,
    draws: np.ndarray,
    block: int = 200,
) -> dict[K, np.ndarray]:
    """Every statistic on every resample, from one weight matrix per block shared by all of them.

    ``statistics`` maps a key to a function of a block of resample weights (see
    :func:`draw_weights`), such as a metric's ``aggregate_many``. Building the weights costs more
    than most statistics, so a report with many metrics builds them once, not once per metric;
    blocks of ``block`` resamples bound the memory.
    """
    parts: dict[K, list[np.ndarray]] = {key: [] for key in statistics}
    for start in range(0, len(draws), block):
        weights = draw_weights(draws[start : start + block], n)
        for key, statistic in statistics.items():
            parts[key].append(np.asarray(statistic(weights), dtype=float))
    return {key: np.concatenate(p) if p else np.empty(0) for key, p in parts.items()}


def apply_draws(
    aggregate: Callable[[Sequence[dict[str, Any]]], float | None],
    aggregate_many: Callable[[np.ndarray], np.ndarray] | None,
    records: Sequence[dict[str, Any]],
    draws: np.ndarray,
    block: int = 200,
) -> np.ndarray:
    """The statistic on every resample.

    With ``aggregate_many`` (which takes a block of resample weights, see :func:`draw_weights`) it
    is vectorised, in blocks of ``block`` resamples to bound memory; otherwise ``aggregate`` is
    called on each resample's rows.
    """
    if aggregate_many is not None:
        parts = [aggregate_many(draw_weights(draws[s : s + block], len(records))) for s in range(0, len(draws), block)]
        return np.concatenate([np.asarray(p, dtype=float) for p in parts])
    values = []
    for row in draws:
        subset = [records[i] for i in row if i >= 0]
        value = aggregate(subset)
        values.append(np.nan if value is None else value)
    return np.asarray(values, dtype=float)


def percentile_ci(values: np.ndarray, level: float = DEFAULT_LEVEL) -> tuple[float | None, float | None]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return None, None
    alpha = (1 - level) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_p_value(samples: np.ndarray) -> float | None:
    """Two-sided p-value of "the difference is 0" from the bootstrap distribution of the difference.

    It inverts the percentile interval (p < 1 - level exactly when the interval excludes 0), with
    the usual +1 correction so a p-value is never reported as 0 from finitely many resamples.
    """
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = min(int((finite <= 0).sum()), int((finite >= 0).sum()))
    return min(1.0, 2 * (tail + 1) / (finite.size + 1))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values over the metrics compared together.

    A gate that fails when *any* of eight metrics drops would, uncorrected, raise a false alarm far
    more often than 5% of the time; the adjustment bounds that family-wise rate. ``--metrics``
    narrows the family, which is how a team gains power on the metric it cares about.
    """
    defined = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(defined):
        running = max(running, min(1.0, (len(defined) - rank) * p))
        out[i] = running
    return out


def classify(diff: float | None, p_value: float | None, level: float, min_effect: float) -> str:
    """A drop is a regression when it is significant (Holm-adjusted) *and* larger than ``min_effect``."""
    if diff is None or p_value is None:
        return "undefined"
    if p_value >= 1 - level:
        return "not_significant"
    if diff < -min_effect:
        return "regression"
    if diff > min_effect:
        return "improvement"
    return "within_tolerance"


# Below this many clusters a percentile bootstrap interval is too narrow to trust: it can only
# recombine the few clusters there are, and with one cluster every resample is the full set.
MIN_CLUSTERS = 10


def few_clusters_warning(n_clusters: int, unit: str, where: str = "") -> str | None:
    """A warning when an interval rests on fewer than :data:`MIN_CLUSTERS` clusters, else ``None``."""
    if n_clusters >= MIN_CLUSTERS or n_clusters == 0:
        return None
    prefix = f"{where}: " if where else ""
    collapse = " (one cluster: every resample is the whole set, so the interval is a point)" if n_clusters == 1 else ""
    return (f"{prefix}95% CIs rest on {n_clusters} {unit} cluster{'s' if n_clusters != 1 else ''}, fewer than "
            f"{MIN_CLUSTERS}: the bootstrap interval understates the uncertainty{collapse}")
