"""Calibration of the regression gate: few false alarms under no change, and a real drop is caught.

Every trial is seeded, so each test is deterministic; the bounds are those the issue sets (at most 5%
of trials flag a regression when nothing changed; a 3-point drop injected into 500 samples is caught).
Trial counts are sized to keep the file under ~20 s on two cores.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pytest

from radbench.compare import paired_bootstrap
from radbench.metrics.base import ScoreInput
from radbench.metrics.bleu import Bleu

pytestmark = pytest.mark.slow  # calibration over hundreds of simulated runs

N = 500
VOCAB = [f"w{i}" for i in range(60)]


def _records(metric_id: str, values: Sequence[float]) -> list[dict[str, Any]]:
    return [{"id": f"s{i}", metric_id: float(v)} for i, v in enumerate(values)]


def _ids(n: int) -> list[str]:
    return [f"s{i}" for i in range(n)]


def _flag_rate(trials: list[list[str]]) -> float:
    return sum("regression" in statuses for statuses in trials) / len(trials)


def _bleu_records(predictions: Sequence[str], references: Sequence[str]) -> list[dict[str, Any]]:
    records = Bleu().score([ScoreInput(f"s{i}", p, (r,)) for i, (p, r) in enumerate(zip(predictions, references))])
    for i, record in enumerate(records):
        record["id"] = f"s{i}"
    return records


def _references(rng: np.random.Generator, n: int) -> list[str]:
    return [" ".join(rng.choice(VOCAB, size=int(rng.integers(8, 20)))) for _ in range(n)]


def _generate(rng: np.random.Generator, references: Sequence[str], skill: np.ndarray) -> list[str]:
    """A model that keeps each reference token with a per-sample probability (sample difficulty)."""
    return [
        " ".join(t if rng.random() < skill[i] else str(rng.choice(VOCAB)) for t in ref.split())
        for i, ref in enumerate(references)
    ]


def test_identical_rerun_never_flags() -> None:
    rng = np.random.default_rng(7)
    refs = _references(rng, N)
    preds = _generate(rng, refs, rng.uniform(0.4, 0.95, N))
    bleu = _bleu_records(preds, refs)
    for record, value in zip(bleu, rng.random(N) < 0.7):
        record["accuracy"] = float(value)
    rerun = [dict(r) for r in bleu]
    for seed in range(5):
        diffs = paired_bootstrap(bleu, rerun, ["accuracy", "bleu1", "bleu4"], _ids(N), seed=seed)
        assert all(d.diff == 0 and d.p_value == 1 and d.status == "not_significant" for d in diffs)


@pytest.mark.parametrize("paired_difficulty", [False, True], ids=["iid", "per-sample-difficulty"])
def test_same_distribution_flags_at_most_5_percent(paired_difficulty: bool) -> None:
    """Both runs' per-sample scores are drawn from one distribution: any flag is a false alarm."""
    trials = []
    for trial in range(150):
        rng = np.random.default_rng(10_000 + trial)
        p = rng.beta(2, 1, N) if paired_difficulty else np.full(N, 0.7)
        base, new = rng.random(N) < p, rng.random(N) < p
        diffs = paired_bootstrap(_records("accuracy", base), _records("accuracy", new), ["accuracy"], _ids(N),
                                 seed=trial)
        trials.append([d.status for d in diffs])
    assert _flag_rate(trials) <= 0.05


def test_a_gate_on_several_metrics_still_flags_at_most_5_percent_of_runs() -> None:
    """Four unrelated metrics, none changed: without the Holm adjustment a run is flagged far more often."""
    metrics = ["accuracy", "rouge1", "rouge2", "rougeL"]
    adjusted, raw = [], []
    for trial in range(150):
        rng = np.random.default_rng(15_000 + trial)
        p = rng.beta(2, 1, (len(metrics), N))
        base = [{"id": f"s{i}", **{m: float(rng.random() < p[k, i]) for k, m in enumerate(metrics)}} for i in range(N)]
        new = [{"id": f"s{i}", **{m: float(rng.random() < p[k, i]) for k, m in enumerate(metrics)}} for i in range(N)]
        diffs = paired_bootstrap(base, new, metrics, _ids(N), seed=trial)
        adjusted.append([d.status for d in diffs])
        raw.append(["regression" if d.p_value < 0.05 and d.diff < 0 else "" for d in diffs])
    assert _flag_rate(adjusted) <= 0.05 < _flag_rate(raw)


def test_corpus_bleu_same_distribution_flags_at_most_5_percent() -> None:
    """Each run's prediction for a sample is one of four draws of one generator, picked at random.

    The candidates are scored once; trials only re-pick them, so this stays cheap while exercising
    the corpus-BLEU paired bootstrap over sufficient statistics.
    """
    n, draws = 250, 4
    rng = np.random.default_rng(20_000)
    refs = _references(rng, n)
    skill = rng.uniform(0.5, 0.95, n)
    candidates = [_bleu_records(_generate(rng, refs, skill), refs) for _ in range(draws)]
    trials = []
    for trial in range(80):
        pick = np.random.default_rng(trial).integers(0, draws, size=(2, n))
        base = [candidates[pick[0, i]][i] for i in range(n)]
        new = [candidates[pick[1, i]][i] for i in range(n)]
        diffs = paired_bootstrap(base, new, ["bleu4"], _ids(n), seed=trial)
        trials.append([d.status for d in diffs])
    assert _flag_rate(trials) <= 0.05


def test_cluster_bootstrap_is_calibrated_where_the_row_bootstrap_is_not() -> None:
    """Four questions per patient share a patient-level change: resampling rows under-states the noise."""
    clustered, by_row = [], []
    clusters = [f"p{i // 4}" for i in range(N)]
    for trial in range(80):
        rng = np.random.default_rng(30_000 + trial)
        base = rng.beta(5, 3, N)
        shared = rng.normal(0, 0.08, N // 4).repeat(4)  # zero-mean: no real change, only correlated noise
        new = np.clip(base + shared + rng.normal(0, 0.02, N), 0, 1)
        b, n = _records("rougeL", base), _records("rougeL", new)
        clustered.append([d.status for d in paired_bootstrap(b, n, ["rougeL"], clusters, seed=trial)])
        by_row.append([d.status for d in paired_bootstrap(b, n, ["rougeL"], _ids(N), seed=trial)])
    assert _flag_rate(clustered) <= 0.05
    assert _flag_rate(by_row) > 2 * max(_flag_rate(clustered), 0.025)


def test_three_point_accuracy_drop_in_500_samples_is_caught() -> None:
    """15 of 500 right answers turned wrong (3 points), on top of 5% of answers re-drawn at random."""
    caught = []
    for trial in range(100):
        rng = np.random.default_rng(40_000 + trial)
        p = rng.beta(2, 1, N)
        base = rng.random(N) < p
        new = base.copy()
        churn = rng.choice(N, N // 20, replace=False)
        new[churn] = rng.random(churn.size) < p[churn]
        new[rng.choice(np.flatnonzero(new), 15, replace=False)] = False
        diffs = paired_bootstrap(_records("accuracy", base), _records("accuracy", new), ["accuracy"], _ids(N),
                                 seed=trial, min_effect=0.01)
        caught.append(diffs[0].status == "regression")
        if trial < 20:  # without churn the drop is the only change: it must always be caught
            clean = base.copy()
            clean[rng.choice(np.flatnonzero(clean), 15, replace=False)] = False
            only_drop = paired_bootstrap(_records("accuracy", base), _records("accuracy", clean), ["accuracy"],
                                         _ids(N), seed=trial, min_effect=0.01)
            assert only_drop[0].status == "regression" and only_drop[0].diff == pytest.approx(-0.03)
    assert sum(caught) / len(caught) >= 0.9


def test_three_point_corpus_bleu_drop_in_500_samples_is_caught() -> None:
    """Scramble word order in just enough predictions to lower corpus BLEU-4 by 3 points."""
    for trial in range(6):
        rng = np.random.default_rng(50_000 + trial)
        refs = _references(rng, N)
        preds = _generate(rng, refs, rng.uniform(0.5, 0.95, N))
        base = _bleu_records(preds, refs)
        target = Bleu().aggregate("bleu4", base) - 0.03
        new_preds, order = list(preds), rng.permutation(N)
        for count, i in enumerate(order, start=1):
            tokens = new_preds[i].split()
            rng.shuffle(tokens)
            new_preds[i] = " ".join(tokens)
            if count % 5 == 0 and Bleu().aggregate("bleu4", _bleu_records(new_preds, refs)) <= target:
                break
        new = _bleu_records(new_preds, refs)
        diff = paired_bootstrap(base, new, ["bleu4"], _ids(N), seed=trial, min_effect=0.01)[0]
        assert diff.diff <= -0.03 and diff.status == "regression", diff
