"""``radbench score`` reads predictions made elsewhere: radbench JSONL and RadFM's own CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from radbench import results as results_mod
from radbench.cli import main
from radbench.store import RESULTS, SCORES

PAIRS = [
    ("Mild cardiomegaly. Small bilateral pleural effusions.", "No pneumothorax. Mild cardiomegaly with bilateral pleural effusions.", "mimic"),
    ("Lungs are clear.", "The lungs are clear. Heart size is normal.", "mimic"),
    ("yes", "yes", "vqarad"),
    ("", "Right pleural effusion with atelectasis.", "vqarad"),
]


def _score(path: Path, out: Path, task: str = "report") -> dict:
    assert main(["score", str(path), "--task", task, "--output", str(out)]) == 0
    return json.loads((out / RESULTS).read_text())


def test_jsonl_and_radfm_csv_give_identical_scores(tmp_path: Path) -> None:
    jsonl = tmp_path / "preds.jsonl"
    jsonl.write_text("".join(json.dumps({"id": f"{d}-{i + 1:05d}", "prediction": p, "reference": r, "dataset": d}) + "\n"
                             for i, (p, r, d) in enumerate(PAIRS)))
    radfm = tmp_path / "output_whole_2_epochcaption.csv"
    with open(radfm, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Question", "Ground Truth", "Pred", "belong_to"])
        for p, r, d in PAIRS:
            writer.writerow([repr(["Please write a report for this scan<image>?"]), repr([r]), repr([p]), repr([d])])
    from_jsonl = _score(jsonl, tmp_path / "a")
    from_csv = _score(radfm, tmp_path / "b")
    assert from_jsonl["metrics"] == from_csv["metrics"]
    assert set(from_csv["subsets"]) == {"mimic", "vqarad"}
    assert from_csv["source"]["format"] == "radfm-csv"
    results_mod.validate(from_csv)
    scores = [json.loads(line) for line in (tmp_path / "b" / SCORES).read_text().splitlines()]
    assert len(scores) == 4 and scores[3]["rougeL"] == 0.0


def test_score_reports_a_bad_cell_by_row_and_column(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text('Question,Ground Truth,Pred,belong_to\n"[\'q\']","[\'a\'","[\'b\']","[\'x\']"\n')
    assert main(["score", str(bad), "--task", "report", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "row 1" in err and "Ground Truth" in err and len(err.strip().splitlines()) == 1


def test_score_jsonl_missing_field_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "1", "prediction": "x"}) + "\n")
    assert main(["score", str(path), "--task", "vqa", "--output", str(tmp_path / "o")]) == 2
    assert "record 1 lacks reference" in capsys.readouterr().err


def test_jsonl_without_final_newline_is_read_but_half_a_record_is_refused(tmp_path: Path, capsys) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "prediction": "yes", "reference": "yes"}) + "\n"
                    + json.dumps({"id": "b", "prediction": "no", "reference": "yes"}))
    res = _score(path, tmp_path / "o", task="diagnosis")
    assert res["n_samples"] == 2 and res["metrics"]["accuracy"]["value"] == 0.5
    path.write_text(path.read_text()[:-5])
    assert main(["score", str(path), "--task", "diagnosis", "--output", str(tmp_path / "o2")]) == 2
    assert "incomplete" in capsys.readouterr().err


def test_metric_args_reach_the_metric_and_its_recorded_config(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RADBENCH_METRIC_ARGS", "")  # restored after the test: --metric-args extends it
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "prediction": "left", "reference": "right", "options": ["left", "right"]})
                    + "\n")
    assert main(["score", str(path), "--task", "diagnosis", "--output", str(tmp_path / "o"),
                 "--metric-args", "accuracy.min_similarity=0.9"]) == 0
    res = json.loads((tmp_path / "o" / RESULTS).read_text())
    assert res["metric_configs"]["accuracy"]["min_similarity"] == 0.9
    assert "accuracy" in capsys.readouterr().out
    monkeypatch.setenv("RADBENCH_METRIC_ARGS", "")
    assert main(["score", str(path), "--task", "diagnosis", "--output", str(tmp_path / "o2"),
                 "--metric-args", "accuracy"]) == 2


def test_the_environment_variable_is_read_by_the_command_line_and_passed_down(tmp_path: Path, monkeypatch) -> None:
    """``RADBENCH_METRIC_ARGS`` reaches the metric through the CLI; ``--metric-args`` overrides it per key,
    and code below the CLI (scoring, rescore) takes settings only as arguments."""
    from radbench.rescore import score_file

    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a", "prediction": "left", "reference": "right", "options": ["left", "right"]})
                    + "\n")
    monkeypatch.setenv("RADBENCH_METRIC_ARGS", "accuracy.min_similarity=0.8")
    assert main(["score", str(path), "--task", "diagnosis", "--output", str(tmp_path / "env")]) == 0
    assert json.loads((tmp_path / "env" / RESULTS).read_text())["metric_configs"]["accuracy"]["min_similarity"] == 0.8
    assert main(["score", str(path), "--task", "diagnosis", "--output", str(tmp_path / "both"),
                 "--metric-args", "accuracy.min_similarity=0.95"]) == 0
    assert json.loads((tmp_path / "both" / RESULTS).read_text())["metric_configs"]["accuracy"]["min_similarity"] == 0.95
    direct = score_file(path, "diagnosis", None, tmp_path / "direct", 0)
    default = score_file(path, "diagnosis", None, tmp_path / "explicit", 0, {"accuracy": {"min_similarity": "0.7"}})
    assert direct["metric_configs"]["accuracy"]["min_similarity"] != 0.8
    assert default["metric_configs"]["accuracy"]["min_similarity"] == 0.7


def test_score_refuses_rows_that_give_the_task_no_scorable_sample(tmp_path: Path, capsys) -> None:
    """Report rows under --task diagnosis: accuracy needs closed questions, so n would be 0 for every metric."""
    path = tmp_path / "reports.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "prediction": p, "reference": r}) + "\n"
                            for i, (p, r, _) in enumerate(PAIRS[:2])))
    assert main(["score", str(path), "--task", "diagnosis", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(path) in err and "--task" in err and "accuracy" in err
    assert not (tmp_path / "o" / RESULTS).exists()
    assert _score(path, tmp_path / "r")["metrics"]["bleu1"]["n"] == 2  # the same rows as a report task score
