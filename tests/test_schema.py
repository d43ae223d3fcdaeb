"""Every file radbench writes validates against the schemas in radbench/schemas/, and the schemas bite.

``radbench demo`` (what ``make demo`` runs) writes runs, the demo leaderboard JSON and its page; each
JSON file and each JSONL line is checked against its schema, as is the output of ``radbench score``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from radbench import results
from radbench.cli import main
from radbench import schemas
from radbench.store import PREDICTIONS, RESULTS, SCORES, read_jsonl

TASKS = ("vqa", "report", "rationale", "diagnosis")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--output", str(out), "--quiet"]) == 0
    return out


def _invalid(obj: Any, name: str) -> bool:
    try:
        schemas.validate(obj, name)
    except jsonschema.ValidationError:
        return True
    return False


@pytest.mark.parametrize("name", schemas.NAMES)
def test_schemas_are_valid_draft_2020_12_and_versioned(name: str) -> None:
    schema = schemas.load(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "Schema version 1" in schema["description"]


def test_results_module_uses_the_same_schema() -> None:
    assert results.schema() == schemas.load("results")


def test_demo_writes_only_valid_files(demo: Path) -> None:
    runs = sorted(p.parent for p in demo.rglob(RESULTS))
    assert len(runs) == 2 * len(TASKS)
    for folder in runs:
        schemas.validate(json.loads((folder / RESULTS).read_text()), "results")
        for name, schema in ((SCORES, "scores"), (PREDICTIONS, "predictions")):
            records, torn = read_jsonl(folder / name)
            assert records and not torn
            for record in records:
                schemas.validate(record, schema)
    board = json.loads((demo / "leaderboard.json").read_text())
    schemas.validate(board, "leaderboard")
    assert len(board["groups"]) == len(TASKS) and all(g["dataset"]["is_demo"] for g in board["groups"])
    assert "DEMO DATA, NOT A BENCHMARK" in board["title"]
    page = (demo / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "DEMO DATA, NOT A BENCHMARK" in page


def test_results_record_what_makes_runs_comparable(demo: Path) -> None:
    res = json.loads((demo / "retrieval-report" / RESULTS).read_text())
    assert {"name", "version"} <= set(res["task"]) and len(res["dataset"]["manifest_hash"]) == 64
    assert {"prompt_hash", "shots", "gen_kwargs", "seed"} <= set(res)
    assert {"name", "version", "fingerprint", "trained_on"} <= set(res["model"])
    assert res["model"]["trained_on"] == "unknown"
    for group, config in res["metric_configs"].items():
        assert config["ids"] and config["version"], group
    records, _ = read_jsonl(demo / "retrieval-vqa" / SCORES)
    assert all(r["cluster"] for r in records)  # patient/study ids for the paired bootstrap


def test_radbench_score_output_validates(tmp_path: Path) -> None:
    preds = tmp_path / "preds.jsonl"
    preds.write_text("".join(json.dumps({"id": f"s{i}", "prediction": p, "reference": "no acute findings",
                                         "patient_id": f"p{i // 2}"}) + "\n"
                             for i, p in enumerate(["no acute findings", "normal chest", "", "no findings"])))
    assert main(["score", str(preds), "--task", "report", "--output", str(tmp_path / "out")]) == 0
    schemas.validate(json.loads((tmp_path / "out" / RESULTS).read_text()), "results")
    records, _ = read_jsonl(tmp_path / "out" / SCORES)
    for record in records:
        schemas.validate(record, "scores")
    assert [r["cluster"] for r in records] == ["p0", "p0", "p1", "p1"]


def test_schemas_reject_what_readers_cannot_trust(demo: Path) -> None:
    res = json.loads((demo / "majority-diagnosis" / RESULTS).read_text())
    for edit in (
        lambda r: r["dataset"].pop("manifest_hash"),
        lambda r: r["dataset"].update(manifest_hash="not-a-hash"),
        lambda r: r.update(schema_version="2"),
        lambda r: r["metrics"]["accuracy"].update(value=1.5),
        lambda r: r["metric_configs"]["accuracy"].pop("ids"),
        lambda r: r["model"].update(trained_on=None),
    ):
        broken = copy.deepcopy(res)
        edit(broken)
        assert _invalid(broken, "results")

    board = json.loads((demo / "leaderboard.json").read_text())
    for bad_link in ("javascript:alert(1)", "/etc/passwd", "https://example.org/x", 'a"b'):
        broken = copy.deepcopy(board)
        broken["groups"][0]["entries"][0]["links"]["results"] = bad_link
        assert _invalid(broken, "leaderboard"), bad_link
    broken = copy.deepcopy(board)
    broken["groups"][0]["entries"][0]["trained_on_dataset"] = "maybe"
    assert _invalid(broken, "leaderboard")

    assert _invalid({"id": "s1", "subset": "", "bleu4": [1, 2]}, "scores")
    assert not _invalid({"id": "s1", "subset": "", "cluster": "p1", "bleu4": None, "_bleu": {"match": [1]}}, "scores")


def test_results_label_every_metric_with_its_source(demo: Path) -> None:
    """results.json says where each concept and BERTScore number came from, as radbench/labels.py derives it."""
    from radbench import labels

    for name in ("retrieval-report", "retrieval-rationale", "retrieval-vqa"):
        res = json.loads((demo / name / RESULTS).read_text())
        assert res["metric_labels"] == labels.metric_labels(res["metrics"], res["metric_configs"])
        assert list(res["metric_labels"]) == list(res["metrics"])
    report = json.loads((demo / "retrieval-report" / RESULTS).read_text())["metric_labels"]
    assert report["umls_precision"] == "UMLS P · HPO index"
    assert report["umls_neg_f1"] == "UMLS-neg F1 · HPO index"
    assert report["bertscore_f1"] == "BERTScore F1 · all-MiniLM-L6-v2, layer 6"
    assert report["bleu1"] == "bleu1"
    rationale = json.loads((demo / "retrieval-rationale" / RESULTS).read_text())["metric_labels"]
    assert rationale["diagnosis_hit"] == "diagnosis_hit · HPO index"


def test_schema_holds_the_concept_source_to_known_labels(demo: Path) -> None:
    from radbench.metrics.umls import extractors

    res = json.loads((demo / "retrieval-report" / RESULTS).read_text())
    enum = results.schema()["$defs"]["conceptSource"]["properties"]["source_label"]["enum"]
    backends = set(extractors.SOURCE_LABELS.values()) | {extractors.SOURCE_LABELS["scispacy"] + " (entities)"}
    assert set(enum) == backends  # a new backend's label must be added to the schema too
    for edit in (
        lambda r: r["metric_configs"]["umls"].pop("source_label"),
        lambda r: r["metric_configs"]["umls"].update(source_label="UMLS"),
        lambda r: r["metric_labels"].update(umls_f1=""),
        lambda r: r["metric_labels"].update(umls_f1=3),
    ):
        broken = copy.deepcopy(res)
        edit(broken)
        assert _invalid(broken, "results")
    # umls version 1 predates source_label: such files still load (and are labelled without a source).
    old = copy.deepcopy(res)
    old["metric_configs"]["umls"].pop("source_label")
    old["metric_configs"]["umls"]["version"] = "1"
    old.pop("metric_labels")
    assert not _invalid(old, "results")
    rationale = json.loads((demo / "retrieval-rationale" / RESULTS).read_text())
    rationale["metric_configs"]["rationale"]["concepts"]["source_label"] = "HPO"
    assert _invalid(rationale, "results")
