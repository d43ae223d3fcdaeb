"""One run per directory: another model, task, dataset or configuration is refused in one line and
touches nothing; the same configuration resumes; ``--output`` naming a file is one line; scored files
of one test set compare whatever their file names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radbench.cli import main
from radbench.store import PREDICTIONS, RESULTS


def run(out: Path, *extra: str, model: str = "majority", task: str = "vqa") -> int:
    return main(["run", "--model", model, "--task", task, "--dataset", "demo", "--output", str(out), "--quiet", *extra])


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith("radbench: error:"), err
    return err


@pytest.mark.parametrize("other, field", [
    ((), None),  # the same configuration resumes
    (("--limit", "5"), None),  # a limit, batch size or metrics are not part of the identity
    (("--model", "retrieval"), "model"),
    (("--task", "report"), "task"),
    (("--seed", "3"), "seed"),
    (("--gen-kwargs", "max_new_tokens=3"), "gen_kwargs"),
    (("--shots", "1"), "shots"),
])
def test_another_run_into_a_run_directory_is_refused(tmp_path: Path, capsys, other, field) -> None:
    out = tmp_path / "run"
    assert run(out) == 0
    before = snapshot(out)
    args = list(other)
    model = args.pop(args.index("--model") + 1) if "--model" in args else "majority"
    task = args.pop(args.index("--task") + 1) if "--task" in args else "vqa"
    args = [a for a in args if a not in ("--model", "--task")]
    code = run(out, *args, model=model, task=task)
    if field is None:
        assert code == 0
        assert json.loads((out / "run.json").read_text())["model"] == "majority"
        return
    assert code == 2
    err = one_line(capsys)
    assert f"holds a run of majority on vqa/demo with another {field}" in err
    assert snapshot(out) == before  # touched nothing


def test_a_directory_of_an_older_run_is_identified_by_its_results(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    assert run(out) == 0
    (out / "run.json").unlink()  # written before run identities existed
    assert run(out, model="retrieval") == 2
    assert "holds a run of majority on vqa/demo with another model" in one_line(capsys)
    assert run(out) == 0 and (out / "run.json").is_file()


def test_output_naming_a_file_is_one_line(tmp_path: Path, capsys) -> None:
    target = tmp_path / "results.txt"
    target.write_text("keep me")
    assert run(target) == 2
    assert "is a file, not a run directory" in one_line(capsys)
    assert run(target / "sub") == 2
    assert f"{target} is a file" in one_line(capsys)
    assert target.read_text() == "keep me"


def _write_predictions(path: Path, rows: list[tuple[str, str, str]]) -> None:
    path.write_text("".join(json.dumps({"id": i, "prediction": p, "reference": r}) + "\n" for i, p, r in rows))


def test_scored_files_of_one_test_set_compare(tmp_path: Path, capsys) -> None:
    rows = [(f"q{i}", "yes" if i % 3 else "no", "yes" if i % 2 else "no") for i in range(30)]
    _write_predictions(tmp_path / "a.jsonl", rows)
    other = [(i, "yes", r) for i, _, r in reversed(rows)]  # another model, rows in another order
    _write_predictions(tmp_path / "b.jsonl", other)
    assert main(["score", str(tmp_path / "a.jsonl"), "--task", "vqa", "--output", str(tmp_path / "A"),
                 "--name", "model-a"]) == 0
    assert main(["score", str(tmp_path / "b.jsonl"), "--task", "vqa", "--output", str(tmp_path / "B")]) == 0
    a, b = (json.loads((tmp_path / d / RESULTS).read_text()) for d in "AB")
    assert a["dataset"]["name"] == b["dataset"]["name"] and a["dataset"]["name"].startswith("external:")
    assert "a.jsonl" not in a["dataset"]["name"]
    assert a["model"]["name"] == "model-a" and b["model"]["name"] == "external"
    capsys.readouterr()
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "B")]) == 0
    # another test set (one reference changed) is still refused
    changed = [(i, p, "maybe" if i == "q0" else r) for i, p, r in rows]
    _write_predictions(tmp_path / "c.jsonl", changed)
    assert main(["score", str(tmp_path / "c.jsonl"), "--task", "vqa", "--output", str(tmp_path / "C")]) == 0
    assert main(["compare", str(tmp_path / "A"), str(tmp_path / "C")]) == 2


def test_score_refuses_an_empty_name_and_an_output_file(tmp_path: Path, capsys) -> None:
    _write_predictions(tmp_path / "a.jsonl", [("q1", "yes", "yes")])
    assert main(["score", str(tmp_path / "a.jsonl"), "--task", "vqa", "--output", str(tmp_path / "A"),
                 "--name", " "]) == 2
    assert "--name" in one_line(capsys)
    assert main(["score", str(tmp_path / "a.jsonl"), "--task", "vqa", "--output", str(tmp_path / "a.jsonl")]) == 2
    assert "is a file" in one_line(capsys)
    assert not (tmp_path / PREDICTIONS).exists()


def test_a_tampered_run_identity_is_one_line_and_touches_nothing(tmp_path: Path, capsys) -> None:
    """A run.json nested past the interpreter's limit (or garbled) is refused in one line, not a RecursionError."""
    out = tmp_path / "run"
    assert run(out) == 0
    (out / "run.json").write_text("[" * 200000)
    before = snapshot(out)
    assert run(out) == 2
    assert "run.json: unreadable run identity" in one_line(capsys)
    assert snapshot(out) == before
