"""SIGKILL at seeded random points, then resume: nothing lost, nothing doubled, same results."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from radbench import results as results_mod
from radbench.store import PREDICTIONS, RESULTS, SCORES
from tests.conftest import TESTS

ROOT = TESTS.parent
ARGS = ["run", "--model", "tests.support.adapters:EchoAdapter", "--task", "vqa", "--dataset", "demo", "--quiet",
        "--batch-size", "2"]
POINTS = {"generate": 32, "fsync": 32, "score": 1, "replace": 2}


def _run(out: Path, *prefix: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", *(prefix or ("radbench",)), *ARGS, "--output", str(out)]
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.slow
def test_ten_seeded_kills_then_resume_equal_an_uninterrupted_run(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert _run(reference).returncode == 0
    out = tmp_path / "crashed"
    rng = random.Random(20261127)
    killed = 0
    for _ in range(10):
        point = rng.choice(sorted(POINTS))
        n = rng.randint(1, POINTS[point])
        proc = _run(out, "tests.support.crashy", point, str(n))
        assert proc.returncode in (0, -9), proc.stderr
        killed += proc.returncode == -9
        if (out / PREDICTIONS).exists():
            ids = [json.loads(line)["id"] for line in (out / PREDICTIONS).read_text().splitlines()
                   if line.endswith("}")]
            assert len(ids) == len(set(ids)) or proc.returncode == -9
    assert killed >= 5, "most injected points must really interrupt the run"
    final = _run(out)
    assert final.returncode == 0, final.stderr
    records = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    assert len(records) == len({r["id"] for r in records}) == 63
    got, want = (json.loads((d / RESULTS).read_text()) for d in (out, reference))
    assert results_mod.comparable_view(got) == results_mod.comparable_view(want)
    assert (out / PREDICTIONS).read_bytes() == (reference / PREDICTIONS).read_bytes()
    assert (out / SCORES).read_bytes() == (reference / SCORES).read_bytes()
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name not in (".radbench.lock", ".radbench.lock.guard")]
