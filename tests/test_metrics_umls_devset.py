"""The default UMLS backend against radbench's hand-labelled development set (tests/data/umls_dev.jsonl).

Each row is one report sentence with the findings a radiologist would label and their state
(asserted, negated, uncertain). A quarter of the rows (``split: holdout``) were never looked at while
the lexicon, the HPO filters and the triggers were tuned; their figures are checked separately.
The targets are the issue's: precision >= 0.95 and recall >= 0.85 for asserted findings, state
(negation/uncertainty) accuracy >= 0.9 on the concepts found.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from radbench.metrics.umls import Umls

DEV_SET = Path(__file__).parent / "data" / "umls_dev.jsonl"


def load(split: str | None = None) -> list[dict]:
    rows = [json.loads(line) for line in DEV_SET.read_text().splitlines() if line.strip()]
    return [r for r in rows if split is None or r["split"] == split]


@dataclass
class Figures:
    precision: float  # asserted findings, pooled over sentences
    recall: float
    concept_precision: float  # any state
    concept_recall: float
    state_accuracy: float  # concepts found in both: predicted state equals the label
    errors: list[str]


def _ratio(a: int, b: int) -> float:
    return a / b if b else 1.0


def evaluate(metric: Umls, rows: Sequence[dict]) -> Figures:
    found = metric.extract([r["text"] for r in rows])
    tp = fp = fn = ctp = cfp = cfn = same = both = 0
    errors = []
    for row, mentions in zip(rows, found):
        gold = {f["concept"]: f["state"] for f in row["findings"]}
        pred: dict[str, set[str]] = {}
        for m in mentions:
            pred.setdefault(m.cui, set()).add(m.state)
        gold_a = {c for c, s in gold.items() if s == "asserted"}
        pred_a = {c for c, s in pred.items() if "asserted" in s}
        tp, fp, fn = tp + len(gold_a & pred_a), fp + len(pred_a - gold_a), fn + len(gold_a - pred_a)
        ctp, cfp, cfn = ctp + len(set(gold) & set(pred)), cfp + len(set(pred) - set(gold)), cfn + len(set(gold) - set(pred))
        for c in set(gold) & set(pred):
            both += 1
            same += pred[c] == {gold[c]}
        if gold != {c: "|".join(sorted(s)) for c, s in pred.items()}:
            errors.append(f"{row['id']} {row['text']!r}: gold {gold} pred {pred}")
    return Figures(_ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(ctp, ctp + cfp), _ratio(ctp, ctp + cfn),
                   _ratio(same, both), errors)


@pytest.fixture(scope="module")
def metric(hpo_index: Path) -> Umls:
    return Umls(cache=False)


def test_development_set_is_large_varied_and_labelled() -> None:
    rows = load()
    assert len(rows) >= 300 and len({r["text"] for r in rows}) == len(rows)
    assert {r["modality"] for r in rows} == {"chest x-ray", "ct", "mri"}
    states = [f["state"] for r in rows for f in r["findings"]]
    assert {"asserted", "negated", "uncertain"} == set(states)
    assert sum(not r["findings"] for r in rows) >= 40  # normal statements and lines/tubes: no finding
    assert 0.2 <= len(load("holdout")) / len(rows) <= 0.3


@pytest.mark.parametrize("split", ["tune", "holdout"])
def test_targets_on_the_development_set(metric: Umls, split: str) -> None:
    figures = evaluate(metric, load(split))
    summary = (f"{split}: P {figures.precision:.3f} R {figures.recall:.3f} state {figures.state_accuracy:.3f}\n"
               + "\n".join(figures.errors[:40]))
    assert figures.precision >= 0.95, summary
    assert figures.recall >= 0.85, summary
    assert figures.state_accuracy >= 0.9, summary
