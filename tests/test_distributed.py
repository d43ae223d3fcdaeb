"""Data-parallel runs on CPU with torchrun and gloo: same results, any-world-size resume, dead ranks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radbench import results as results_mod
from radbench.store import PREDICTIONS, RESULTS, SCORES
from tests.conftest import TESTS

ROOT = TESTS.parent
ECHO = "tests.support.adapters:EchoAdapter"


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _run_args(out: Path, *extra: str, model: str = ECHO) -> list[str]:
    return ["run", "--model", model, "--task", "vqa", "--dataset", "demo", "--output", str(out), "--quiet",
            "--batch-size", "2", *extra]


def _single(out: Path, *extra: str, model: str = ECHO) -> None:
    done = subprocess.run([sys.executable, "-m", "radbench", *_run_args(out, *extra, model=model)], cwd=ROOT,
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def _torchrun(out: Path, nproc: int, *extra: str, model: str = ECHO) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "radbench", *_run_args(out, *extra, model=model), "--launcher", "torchrun",
           "--nproc", str(nproc)]
    return subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def _same_run(a: Path, b: Path) -> None:
    ra, rb = json.loads((a / RESULTS).read_text()), json.loads((b / RESULTS).read_text())
    va, vb = results_mod.comparable_view(ra), results_mod.comparable_view(rb)
    assert va == vb
    assert (a / PREDICTIONS).read_bytes() == (b / PREDICTIONS).read_bytes()
    assert (a / SCORES).read_bytes() == (b / SCORES).read_bytes()


def test_two_ranks_equal_one_rank(tmp_path: Path) -> None:
    _single(tmp_path / "one", model="retrieval")
    proc = _torchrun(tmp_path / "two", 2, model="retrieval")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _same_run(tmp_path / "one", tmp_path / "two")
    res = json.loads((tmp_path / "two" / RESULTS).read_text())
    assert res["timing"]["world_size"] == 2
    assert not list((tmp_path / "two" / "parts").glob("*"))


@pytest.mark.slow
def test_resume_on_a_different_world_size(tmp_path: Path) -> None:
    _single(tmp_path / "reference", "--model-args", "delay=0.05")
    out = tmp_path / "resumed"
    proc = _torchrun(out, 2, "--model-args", "delay=0.05")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        parts = list((out / "parts").glob("predictions.*.jsonl")) if (out / "parts").exists() else []
        if sum(len(p.read_bytes().splitlines()) for p in parts) >= 10:
            break
        time.sleep(0.05)
    # Kill the launcher and every rank at once (torchrun's workers run in sessions of their own).
    os.killpg(proc.pid, signal.SIGKILL)
    subprocess.run(["pkill", "-9", "-f", str(out)], check=False)
    proc.wait(timeout=30)
    time.sleep(0.5)
    assert not (out / RESULTS).exists()
    _single(out, "--model-args", "delay=0.05")
    _same_run(tmp_path / "reference", out)
    res = json.loads((out / RESULTS).read_text())
    assert 10 <= res["timing"]["resumed"] < res["n_samples"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_dead_rank_gives_rank0_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "run"
    port = str(_free_port())
    ranks = []
    for rank in (0, 1):
        env = _env(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   RADBENCH_RANK_TIMEOUT="4")
        cmd = [sys.executable, "-m", "radbench", *_run_args(out, "--model-args", "delay=0.2")]
        ranks.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(out.glob("parts/*.rank1.alive")):
        time.sleep(0.05)
    ranks[1].kill()
    started = time.monotonic()
    _, err = ranks[0].communicate(timeout=120)
    assert ranks[0].returncode == 2
    assert "rank 1 of 2 stopped responding" in err and "Traceback" not in err
    assert time.monotonic() - started < 60


def test_gpus_per_replica_is_refused_by_adapters_that_cannot_split(tmp_path: Path, capsys) -> None:
    from radbench.cli import main

    code = main(["run", "--model", "retrieval", "--task", "vqa", "--dataset", "demo", "--output", str(tmp_path),
                 "--model-args", "gpus_per_replica=2"])
    assert code == 2 and "cannot be split across GPUs" in capsys.readouterr().err


@pytest.mark.slow
def test_per_rank_telemetry_and_a_slow_rank_is_reported(tmp_path: Path) -> None:
    proc = _torchrun(tmp_path / "two", 2, "--model-args", "delay=0.02,slow_rank=1")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    res = json.loads((tmp_path / "two" / RESULTS).read_text())
    ranks = res["timing"]["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and sum(r["generated"] for r in ranks) == res["n_samples"]
    assert all(r["batching"]["batch_size"] == 2 for r in ranks)
    assert ranks[1]["seconds"] > 2 * ranks[0]["seconds"]
    assert "warning: rank 1 generated" in err and "check rank 1's device" in err
    even = _torchrun(tmp_path / "even", 2, "--model-args", "delay=0.02")
    _, err = even.communicate(timeout=300)
    assert even.returncode == 0 and "warning" not in err, err
