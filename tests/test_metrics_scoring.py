"""Every metric through ``radbench score``: values with 95% bootstrap intervals, configs recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radbench import registry
from radbench.cli import main
from radbench.errors import UsageError
from radbench.metrics import options
from radbench.store import RESULTS, SCORES

REPORT_IDS = ["bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "bertscore_f1",
              "bertscore_precision", "bertscore_recall", "umls_precision", "umls_recall", "umls_f1",
              "umls_neg_precision", "umls_neg_recall", "umls_neg_f1"]
PAIRS = [
    ("Mild cardiomegaly. Small bilateral pleural effusions. No pneumothorax.",
     "No pneumothorax. Mild cardiomegaly with bilateral pleural effusions.", "p1"),
    ("Lungs are clear without focal consolidation. No pleural effusion or pneumothorax.",
     "The lungs are clear. There is no focal consolidation, pleural effusion or pneumothorax.", "p1"),
    ("Right pleural effusion with atelectasis, increased.",
     "Interval increase in the right pleural effusion with adjacent atelectasis.", "p2"),
    ("No acute cardiopulmonary process.",
     "Endotracheal tube terminates 4 cm above the carina. No acute cardiopulmonary process.", "p3"),
    ("Pneumothorax.", "No pneumothorax.", "p4"),
    ("", "Cardiomegaly.", "p5"),
]


def test_radbench_score_reports_every_metric_with_a_confidence_interval(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "prediction": p, "reference": r, "patient_id": pid}) + "\n"
                            for i, (p, r, pid) in enumerate(PAIRS)))
    out = tmp_path / "scored"
    assert main(["score", str(path), "--task", "report", "--metrics", ",".join(REPORT_IDS), "--output", str(out)]) == 0
    res = json.loads((out / RESULTS).read_text())
    assert set(res["metrics"]) == set(REPORT_IDS)
    for metric_id, m in res["metrics"].items():
        assert m["n"] == len(PAIRS), metric_id
        assert m["ci_low"] <= m["value"] <= m["ci_high"], metric_id
    assert res["metrics"]["umls_f1"]["value"] > res["metrics"]["umls_neg_f1"]["value"]
    configs = res["metric_configs"]
    assert configs["bertscore"]["label"] == "BERTScore-all-MiniLM-L6-v2-L6 (no idf, no rescale)"
    assert configs["umls"]["backend"] == "hpo" and configs["umls"]["index"]["root"] == "HP:0000118"
    assert configs["bleu"]["convention"] == "pycocoevalcap"
    records = [json.loads(line) for line in (out / SCORES).read_text().splitlines()]
    assert {"_bleu", "_umls", "bertscore_precision", "bertscore_recall"} <= set(records[0])


def test_every_registered_metric_id_is_produced_by_its_group() -> None:
    for metric_id, group in registry.METRIC_IDS.items():
        assert metric_id in registry.get("metrics", group).ids, metric_id


def test_metric_arguments_are_parsed_and_checked() -> None:
    assert options.parse_metric_args("bertscore.idf=true, umls.backend=hpo,") == {
        "bertscore": {"idf": "true"}, "umls": {"backend": "hpo"}}
    with pytest.raises(UsageError, match="group.key=value"):
        options.parse_metric_args("idf=true")
    with pytest.raises(UsageError, match="bertscore.num_layers"):
        registry.get("metrics", "bertscore").from_settings({"num_layers": "six"})
