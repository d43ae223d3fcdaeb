"""Several tasks in one command: one run directory per task, a summary, resume per task, and
``leaderboard build`` over the parent directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radbench.cli import main
from radbench.store import PREDICTIONS, RESULTS


def run(out: Path, tasks: str, *extra: str, model: str = "majority") -> int:
    return main(["run", "--model", model, "--task", tasks, "--dataset", "demo", "--output", str(out), *extra])


def test_a_task_list_writes_one_run_per_task_and_a_summary(tmp_path: Path, capsys) -> None:
    out = tmp_path / "bench"
    assert run(out, "vqa,report,rationale") == 0
    table = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert [row["task"] for row in summary["tasks"]] == ["vqa", "report", "rationale"]
    for row in summary["tasks"]:
        res = json.loads((out / row["run"] / RESULTS).read_text())
        assert res["task"]["name"] == row["task"] and res["n_samples"] == row["n_samples"] > 0
        assert {m: v["value"] for m, v in row["metrics"].items()} == {m: v["value"] for m, v in res["metrics"].items()}
        assert row["task"] in table
    assert summary["model"] == "majority" and "summary.json" in table

    # resume per task: nothing is generated again; a task added later runs alone
    assert run(out, "vqa,report,rationale,diagnosis", "--quiet") == 0
    for task in ("vqa", "report", "rationale"):
        assert json.loads((out / task / RESULTS).read_text())["timing"]["generated_now"] == 0
    assert json.loads((out / "diagnosis" / RESULTS).read_text())["timing"]["generated_now"] > 0

    board = tmp_path / "board.json"
    assert main(["leaderboard", "build", str(out), "--output", str(board)]) == 0
    entries = [e for g in json.loads(board.read_text())["groups"] for e in g["entries"]]
    assert len(entries) == 4


def test_all_means_every_task_of_the_dataset(tmp_path: Path) -> None:
    out = tmp_path / "all"
    assert run(out, "all", "--quiet", "--limit", "4") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [row["task"] for row in summary["tasks"]] == ["vqa", "report", "rationale", "diagnosis"]


@pytest.mark.parametrize("tasks, expected", [
    ("vqa,vqq", "vqq"),
    ("vqa,,report", "empty task name"),
    ("vqa,vqa", "named twice"),
])
def test_a_bad_task_list_stops_before_anything_runs(tmp_path: Path, capsys, tasks: str, expected: str) -> None:
    out = tmp_path / "bench"
    assert run(out, tasks, "--quiet") == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and expected in err
    assert not out.exists()


def test_all_needs_a_dataset_and_a_taken_task_directory_stops_everything(tmp_path: Path, capsys) -> None:
    assert main(["run", "--model", "majority", "--task", "all", "--output", str(tmp_path / "x"), "--quiet"]) == 2
    assert "--task all needs --dataset" in capsys.readouterr().err
    out = tmp_path / "bench"
    assert main(["run", "--model", "retrieval", "--task", "report", "--dataset", "demo", "--output",
                 str(out / "report"), "--quiet"]) == 0
    assert run(out, "vqa,report", "--quiet") == 2  # report/ holds another model's run: vqa must not start either
    assert "holds a run of retrieval on report/demo" in capsys.readouterr().err
    assert not (out / "vqa" / PREDICTIONS).exists()
