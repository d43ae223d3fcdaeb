"""The prediction log: torn tails are dropped, corruption elsewhere is an error, writes are atomic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radbench.errors import UsageError
from radbench.store import atomic_write_json, read_jsonl


def test_torn_tail_is_dropped_not_parsed(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    good = json.dumps({"id": "a", "prediction": "yes"}) + "\n"
    path.write_text(good + '{"id": "b", "predic')
    records, torn = read_jsonl(path)
    assert records == [{"id": "a", "prediction": "yes"}] and torn == 1


def test_complete_json_without_newline_counts_as_torn(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n" + json.dumps({"id": "b", "prediction": "no"}))
    records, torn = read_jsonl(path)
    assert [r["id"] for r in records] == ["a"] and torn == 1


def test_corrupt_middle_line_is_an_error_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a"}\nnot json\n{"id": "c"}\n')
    with pytest.raises(UsageError, match="line 2"):
        read_jsonl(path)


def test_atomic_write_leaves_no_temporary_files(tmp_path: Path) -> None:
    target = tmp_path / "results.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]
