"""Bootstrap intervals: they cover the estimate, tighten with n, and resample whole clusters."""

from __future__ import annotations

import numpy as np

from radbench.metrics.base import ScoreInput
from radbench.scoring import Scored, score
from radbench.stats import cluster_draws


def _scored(values: list[float], clusters: list[str] | None = None) -> list[Scored]:
    out = []
    for i, v in enumerate(values):
        item = ScoreInput(str(i), "yes" if v else "no", ("yes",), ("yes", "no"), "closed")
        out.append(Scored(item, cluster=clusters[i] if clusters else ""))
    return out


def test_interval_contains_estimate_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    small = score(_scored(list(rng.random(40) < 0.7)), ["accuracy"], seed=1).metrics["accuracy"]
    large = score(_scored(list(rng.random(1000) < 0.7)), ["accuracy"], seed=1).metrics["accuracy"]
    for m in (small, large):
        assert m["ci_low"] <= m["value"] <= m["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 2


def test_clustered_bootstrap_is_wider_for_correlated_samples() -> None:
    # 20 studies with 10 questions each, all answered alike within a study: 20 independent units, not 200.
    per_study = [True] * 10 + [False] * 10
    values = [v for v in per_study for _ in range(10)]
    clusters = [f"s{i}" for i in range(20) for _ in range(10)]
    naive = score(_scored(values), ["accuracy"], seed=3).metrics["accuracy"]
    clustered = score(_scored(values, clusters), ["accuracy"], seed=3).metrics["accuracy"]
    assert naive["value"] == clustered["value"] == 0.5
    assert (clustered["ci_high"] - clustered["ci_low"]) > 2 * (naive["ci_high"] - naive["ci_low"])


def test_cluster_draws_take_whole_clusters() -> None:
    clusters = ["a", "a", "b", "c", "c", "c"]
    draws = cluster_draws(clusters, iterations=50, seed=0)
    for row in draws:
        picked = [clusters[i] for i in row if i >= 0]
        for label, size in (("a", 2), ("c", 3)):
            assert picked.count(label) % size == 0


def test_same_seed_same_interval() -> None:
    items = _scored([True, False, True, True, False, True, False, True])
    assert score(items, ["accuracy"], seed=5).metrics == score(items, ["accuracy"], seed=5).metrics


def test_few_clusters_are_warned_about_in_the_results() -> None:
    from radbench.stats import MIN_CLUSTERS

    values = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0] * 3
    one = score(_scored(values, ["p1"] * len(values)), ["accuracy"], seed=0)
    assert one.metrics["accuracy"]["ci_low"] == one.metrics["accuracy"]["ci_high"]  # collapsed to a point...
    assert len(one.warnings) == 1 and "1 patient/study cluster" in one.warnings[0]  # ...and said so
    assert "interval is a point" in one.warnings[0] and one.bootstrap["clusters"] == 1
    few = score(_scored(values, [f"p{i % 4}" for i in range(len(values))]), ["accuracy"], seed=0)
    assert len(few.warnings) == 1 and "4 patient/study clusters" in few.warnings[0]
    enough = score(_scored(values, [f"p{i % MIN_CLUSTERS}" for i in range(len(values))]), ["accuracy"], seed=0)
    assert enough.warnings == [] and enough.bootstrap["clusters"] == MIN_CLUSTERS


def test_few_clusters_in_a_subset_are_warned_about_by_name() -> None:
    from dataclasses import replace

    scored = [replace(s, subset="big" if i < 20 else "small")
              for i, s in enumerate(_scored([1.0, 0.0] * 12, [f"p{i}" for i in range(24)]))]
    report = score(scored, ["accuracy"], seed=0)
    assert report.warnings == [w for w in report.warnings if w.startswith("subset 'small': 95% CIs rest on 4")]
    assert len(report.warnings) == 1
