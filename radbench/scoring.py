"""From predictions to per-sample scores and aggregates with confidence intervals.

One path for every metric: each metric scores every sample once (``scores.jsonl`` keeps the
values), then :meth:`Metric.aggregate` gives the reported number and the cluster bootstrap re-applies
the same aggregate to resamples for its interval. ``radbench run`` and ``radbench score`` both call
:func:`score`, so a rescore of old predictions gives exactly what the run reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from radbench import registry
from radbench.errors import UsageError
from radbench.metrics.base import Metric, ScoreInput
from radbench.options import MetricSettings
from radbench.stats import (
    DEFAULT_ITERATIONS,
    DEFAULT_LEVEL,
    cluster_draws,
    few_clusters_warning,
    percentile_ci,
    resample_all,
)


@dataclass(frozen=True)
class Scored:
    """One sample as scoring sees it: the metric input plus what grouping and resampling need."""

    item: ScoreInput
    subset: str = ""
    cluster: str = ""
    failed: bool = False


@dataclass
class ScoreReport:
    records: list[dict[str, Any]]
    metrics: dict[str, dict[str, Any]]
    subsets: dict[str, dict[str, dict[str, Any]]]
    configs: dict[str, dict[str, Any]]
    bootstrap: dict[str, Any] = field(default_factory=dict)
    # One line per interval that rests on too few clusters (results.json "warnings", the console).
    warnings: list[str] = field(default_factory=list)


def resolve_metrics(metric_ids: Sequence[str], settings: MetricSettings | None = None) -> dict[str, Metric]:
    """Metric objects by group for the requested ids (validated before any model is loaded).

    ``settings`` holds each group's ``--metric-args`` strings; a group without settings is built
    with its defaults.
    """
    settings = settings or {}
    groups: dict[str, Metric] = {}
    for metric_id in metric_ids:
        group = registry.metric_group(metric_id)
        if group not in groups:
            groups[group] = registry.get("metrics", group).from_settings(settings.get(group))
            if metric_id not in groups[group].ids:
                raise UsageError(f"metric {metric_id!r}: registered metric {group!r} does not produce it")
    return groups


def parse_metric_list(text: str | None, default: Sequence[str]) -> list[str]:
    if not text:
        return list(default)
    ids = [m.strip() for m in text.split(",") if m.strip()]
    for metric_id in ids:
        registry.metric_group(metric_id)
    return ids


def _summarise(
    metric_ids: Sequence[str],
    groups: dict[str, Metric],
    records: list[dict[str, Any]],
    clusters: list[str],
    seed: int,
    iterations: int,
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if not records:
        return {m: {"value": None, "ci_low": None, "ci_high": None, "n": 0} for m in metric_ids}
    draws = cluster_draws(clusters, iterations, seed)
    metrics = {metric_id: groups[registry.metric_group(metric_id)] for metric_id in metric_ids}
    resampled = resample_all({i: m.resampler(i, records) for i, m in metrics.items()}, len(records), draws)
    for metric_id, metric in metrics.items():
        low, high = percentile_ci(resampled[metric_id])
        n = sum(1 for r in records if r.get(metric_id) is not None)
        out[metric_id] = {"value": metric.aggregate(metric_id, records), "ci_low": low, "ci_high": high, "n": n}
    return out


def score(
    samples: Sequence[Scored],
    metric_ids: Sequence[str],
    seed: int = 0,
    iterations: int = DEFAULT_ITERATIONS,
    settings: MetricSettings | None = None,
) -> ScoreReport:
    groups = resolve_metrics(metric_ids, settings)
    # ``cluster`` is kept per record so a later paired comparison (radbench compare) can resample
    # patients or studies, not rows, without the dataset at hand.
    records: list[dict[str, Any]] = [
        {"id": s.item.id, "subset": s.subset, "cluster": s.cluster or s.item.id} for s in samples
    ]
    # A failed row with no reference (the dataset row itself was unusable) has nothing to score
    # against: it is counted as a failure and left out of every metric, never scored as a match.
    scorable = [i for i, s in enumerate(samples) if not (s.failed and not any(r.strip() for r in s.item.references))]
    for group, metric in groups.items():
        for i, values in zip(scorable, metric.score([samples[i].item for i in scorable])):
            records[i].update({k: v for k, v in values.items() if k in metric.ids or k.startswith("_")})
    for record, s in zip(records, samples):
        if s.failed:
            record["failed"] = True
    unscored = set(range(len(samples))) - set(scorable)
    for i in unscored:
        records[i]["scored"] = False
    clusters = [r["cluster"] for r in records]
    metrics = _summarise(metric_ids, groups, [records[i] for i in scorable], [clusters[i] for i in scorable], seed,
                         iterations)
    subsets: dict[str, dict[str, dict[str, Any]]] = {}
    names = sorted({s.subset for s in samples if s.subset})
    if len(names) > 1:
        for name in names:
            idx = [i for i in scorable if samples[i].subset == name]
            subsets[name] = _summarise(
                metric_ids, groups, [records[i] for i in idx], [clusters[i] for i in idx], seed, iterations
            )
    configs = {group: {"ids": list(m.ids), **m.config(), "lower_is_better": list(m.lower_is_better)}
               for group, m in groups.items()}
    cluster_unit = "sample" if len(set(clusters)) == len(clusters) else "patient/study"
    scored_clusters = [clusters[i] for i in scorable]
    bootstrap = {"iterations": iterations, "level": DEFAULT_LEVEL, "seed": seed, "cluster": cluster_unit,
                 "method": "percentile", "clusters": len(set(scored_clusters))}
    warnings = [few_clusters_warning(len(set(scored_clusters)), cluster_unit)]
    warnings += [few_clusters_warning(len({clusters[i] for i in scorable if samples[i].subset == name}), cluster_unit,
                                      f"subset {name!r}") for name in subsets]
    return ScoreReport(records, metrics, subsets, configs, bootstrap, [w for w in warnings if w])


def finite_or_none(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)
