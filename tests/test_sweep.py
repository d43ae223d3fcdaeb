"""``radbench sweep``: every checkpoint run (and resumed), a trend with CIs, changes against a baseline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pytest

from radbench import registry
from radbench.cli import main
from radbench.errors import UsageError
from radbench import schemas
from radbench.models.base import Adapter
from radbench.sweep import find_checkpoints, print_trend
from radbench.types import Request, stable_hash


class CheckpointAdapter(Adapter):
    """A stand-in for a trained model: the "checkpoint" file names the baseline whose answers it gives."""

    name = "checkpoint-test"
    version = "1"
    max_batch_size = 64
    loads: list[str] = []

    def __init__(self, inner: Adapter, spec: str) -> None:
        self.inner, self.spec = inner, spec

    @classmethod
    def from_args(cls, **model_args: str) -> "CheckpointAdapter":
        path = Path(model_args.pop("checkpoint"))
        cls.loads.append(path.name)
        spec = path.read_text().strip()
        return cls(registry.get("models", spec).from_args(**model_args), spec)

    def observe_exemplars(self, exemplars: Sequence[Request]) -> None:
        self.inner.observe_exemplars(exemplars)

    def generate(self, requests: Sequence[Request]) -> list[str]:
        return self.inner.generate(requests)

    def fingerprint(self) -> str:
        return stable_hash([self.spec, self.inner.fingerprint()])


MODEL = f"{__name__}:CheckpointAdapter"


@pytest.fixture()
def checkpoints(tmp_path: Path) -> Path:
    folder = tmp_path / "train"
    for step, spec in ((100, "retrieval"), (1000, "retrieval"), (200, "majority")):
        (folder / f"step-{step}").mkdir(parents=True)
        (folder / f"step-{step}" / "weights.txt").write_text(spec)
    return folder


def test_find_checkpoints_orders_by_step_and_names_by_relative_path(checkpoints: Path) -> None:
    found = find_checkpoints(str(checkpoints / "step-*" / "weights.txt"))
    assert [(c.name, c.step) for c in found] == [
        ("step-100/weights.txt", 100), ("step-200/weights.txt", 200), ("step-1000/weights.txt", 1000)]
    with pytest.raises(UsageError, match="matches nothing"):
        find_checkpoints(str(checkpoints / "nope-*"))


def test_sweep_runs_each_checkpoint_and_marks_changes(checkpoints: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = tmp_path / "sweep"
    args = ["sweep", "--model", MODEL, "--task", "diagnosis", "--dataset", "demo", "--quiet",
            "--checkpoints", str(checkpoints / "step-*" / "weights.txt"), "--output", str(out)]
    CheckpointAdapter.loads.clear()
    assert main(args) == 0
    trend = json.loads((out / "sweep.json").read_text())
    schemas.validate(trend, "sweep")
    rows = {r["step"]: r for r in trend["checkpoints"]}
    assert [r["step"] for r in trend["checkpoints"]] == [100, 200, 1000]
    assert trend["baseline"] == "step-100/weights.txt" and rows[100]["baseline"]
    assert rows[100]["metrics"]["accuracy"]["status"] == "baseline"
    assert rows[200]["metrics"]["accuracy"]["status"] == "regression"  # majority is far worse than retrieval
    assert rows[200]["metrics"]["accuracy"]["diff_ci_high"] < 0
    assert rows[1000]["metrics"]["accuracy"]["status"] == "not_significant"  # same weights as step 100
    assert rows[1000]["metrics"]["accuracy"]["diff"] == 0
    for row in trend["checkpoints"]:
        assert (Path(row["run"]) / "results.json").is_file()
    table = capsys.readouterr().out
    assert "step-200/weights.txt" in table and "▼" in table
    # Long format: one row per checkpoint and metric, whatever the number of metrics.
    lines = table.splitlines()
    header = next(line for line in lines if "checkpoint" in line)
    assert all(col in header for col in ("metric", "value [95% CI]", "Δ (p Holm)", "verdict"))
    regression = next(line for line in lines if "step-200" in line)
    assert "accuracy" in regression and "regression" in regression
    assert sum(line.count("accuracy") for line in lines if "│" in line) == len(trend["checkpoints"])
    assert any(line.startswith("value [95% CI] =") for line in lines)
    monkeypatch.setenv("COLUMNS", "80")
    print_trend(trend)
    narrow = capsys.readouterr().out
    assert max(len(line) for line in narrow.splitlines()) <= 80 and "…" not in narrow

    # Resume: nothing is generated again, and a new checkpoint is picked up.
    (checkpoints / "step-1500").mkdir()
    (checkpoints / "step-1500" / "weights.txt").write_text("majority")
    assert main(args) == 0
    runs = {r["step"]: json.loads((Path(r["run"]) / "results.json").read_text())
            for r in json.loads((out / "sweep.json").read_text())["checkpoints"]}
    assert {s: r["timing"]["generated_now"] for s, r in runs.items()} == {
        100: 0, 200: 0, 1000: 0, 1500: runs[1500]["n_samples"]}


@pytest.mark.slow
def test_sweep_with_explicit_baseline(checkpoints: Path, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    code = main(["sweep", "--model", MODEL, "--task", "diagnosis", "--dataset", "demo", "--quiet",
                 "--checkpoints", str(checkpoints / "step-*" / "weights.txt"), "--output", str(out),
                 "--baseline", str(checkpoints / "step-200" / "weights.txt")])
    assert code == 0
    trend = json.loads((out / "sweep.json").read_text())
    assert trend["baseline"] == "step-200/weights.txt"
    statuses = {r["step"]: r["metrics"]["accuracy"]["status"] for r in trend["checkpoints"]}
    assert statuses == {100: "improvement", 200: "baseline", 1000: "improvement"}


def test_sweep_usage_errors(checkpoints: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["sweep", "--model", MODEL, "--task", "diagnosis", "--dataset", "demo", "--quiet",
            "--output", str(tmp_path / "s")]
    assert main([*base, "--checkpoints", str(tmp_path / "none-*")]) == 2
    assert "matches nothing" in capsys.readouterr().err
    assert main([*base, "--checkpoints", str(checkpoints / "*" / "weights.txt"),
                 "--model-args", "checkpoint=x"]) == 2
    assert "already sets 'checkpoint'" in capsys.readouterr().err


def test_a_checkpoint_path_reaches_the_adapter_whole() -> None:
    """The sweep adds each checkpoint to the model-args as a mapping: no joining into a string and
    splitting again, so a list value (``gpus=0,1``) and a path with a comma both arrive as given."""
    from radbench import sweep as sweep_mod

    args = sweep_mod._model_args("gpus=0,1,dtype=bf16", "checkpoint", Path("/ckpts/step-1,000"))
    assert args == {"gpus": "0,1", "dtype": "bf16", "checkpoint": "/ckpts/step-1,000"}
