"""Cross-checking a run's published numbers against its own per-sample scores before ranking it.

``results.json`` is a summary anyone can edit; ``scores.jsonl`` holds the per-sample values it was
computed from. A leaderboard ranks a run only if every number in its summary is finite, each value
lies inside its own confidence interval, ``n`` equals the count of samples the metric is defined
on, and the aggregate recomputed from ``scores.jsonl`` (each metric's own ``aggregate``, for the
whole run and for each subset) equals the published value. A run that disagrees is refused, named.
"""

from __future__ import annotations

import math
from typing import Any

from radbench.results import RunData, load_run
from radbench.errors import UsageError

TOLERANCE = 1e-9  # relative; the recomputation reads the same floats the run wrote


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=1e-12)


def _check_entry(where: str, entry: dict[str, Any], records: list[dict[str, Any]], metric_id: str,
                 recompute: Any) -> None:
    value, low, high, n = entry.get("value"), entry.get("ci_low"), entry.get("ci_high"), entry.get("n")
    for name, number in (("value", value), ("ci_low", low), ("ci_high", high)):
        if number is not None and (not isinstance(number, (int, float)) or not math.isfinite(number)):
            raise UsageError(f"{where}: {name} is {number!r}, not a finite number")
    if low is not None and high is not None and low > high and not _close(low, high):
        raise UsageError(f"{where}: inverted confidence interval [{low}, {high}]")
    if value is not None and low is not None and high is not None and not (
            (low <= value or _close(low, value)) and (value <= high or _close(value, high))):
        raise UsageError(f"{where}: value {value} lies outside its own confidence interval [{low}, {high}]")
    defined = sum(1 for r in records if r.get(metric_id) is not None)
    if n != defined:
        raise UsageError(f"{where}: n={n}, but scores.jsonl defines {metric_id} for {defined} samples")
    if recompute is not None:
        again = recompute(metric_id, records)
        if (again is None) != (value is None) or (again is not None and not _close(float(again), float(value))):
            raise UsageError(f"{where}: results.json says {value}, but scores.jsonl gives {again}")


def check(run: RunData) -> None:
    """Raise :class:`UsageError` naming ``run`` and the number when its summary disagrees with its scores."""
    from radbench import registry  # imported on use: `radbench --help` stays light
    from radbench.scoring import resolve_metrics

    scored = load_run(run.path)
    records = scored.records
    data = run.results
    name = str(run.path)
    n_samples = data.get("n_samples")
    metrics: dict[str, Any] = data.get("metrics", {})
    groups = resolve_metrics(list(metrics)) if metrics else {}

    def aggregate(metric_id: str, subset: list[dict[str, Any]]) -> float | None:
        value = groups[registry.metric_group(metric_id)].aggregate(metric_id, subset) if subset else None
        return None if value is None or not math.isfinite(value) else value

    if isinstance(n_samples, int) and len(scored.records) > n_samples:
        raise UsageError(f"{name}: scores.jsonl has {len(scored.records)} scored samples, n_samples is {n_samples}")
    for metric_id, entry in metrics.items():
        _check_entry(f"{name}: metrics.{metric_id}", entry, records, metric_id, aggregate)
        if isinstance(n_samples, int) and isinstance(entry.get("n"), int) and entry["n"] > n_samples:
            raise UsageError(f"{name}: metrics.{metric_id}: n={entry['n']} exceeds n_samples={n_samples}")
    for subset, table in (data.get("subsets") or {}).items():
        rows = [r for r in records if r.get("subset") == subset]
        for metric_id, entry in table.items():
            _check_entry(f"{name}: subsets.{subset}.{metric_id}", entry, rows, metric_id,
                         aggregate if metric_id in metrics else None)
