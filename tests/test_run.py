"""End-to-end runs on the demo: the three files, resume, crash safety, failures, locking."""

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
from radbench.cli import main
from radbench.store import LOCK, PREDICTIONS, RESULTS, SCORES, read_jsonl
from tests.conftest import TESTS

ROOT = TESTS.parent
TEXT_METRICS = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL")


def run(out: Path, *extra: str, model: str = "retrieval", task: str = "vqa") -> dict:
    code = main(["run", "--model", model, "--task", task, "--dataset", "demo", "--output", str(out), "--quiet", *extra])
    assert code == 0
    return json.loads((out / RESULTS).read_text())


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_run_writes_predictions_scores_and_results(tmp_path: Path) -> None:
    res = run(tmp_path, "--metrics", ",".join(TEXT_METRICS))  # not VQA's defaults since BLEU-2..4 left them
    preds, scores = lines(tmp_path / PREDICTIONS), lines(tmp_path / SCORES)
    assert len(preds) == len(scores) == res["n_samples"] > 30
    assert {p["id"] for p in preds} == {s["id"] for s in scores}
    for metric in TEXT_METRICS:
        m = res["metrics"][metric]
        assert 0 <= m["ci_low"] <= m["value"] <= m["ci_high"] <= 1
        assert m["n"] == res["n_samples"]
    record = preds[0]
    for key in ("prompt", "prompt_hash", "images", "exemplar_ids", "gen_kwargs", "model_fingerprint"):
        assert key in record
    timed = {k for t in lines(tmp_path / "timings.jsonl") for k in t["keys"]}
    assert timed == {p["key"] for p in preds}
    assert all(len(img["sha256"]) == 64 for p in preds for img in p["images"])
    assert res["model"]["name"] == "retrieval" and len(res["model"]["fingerprint"]) == 64
    assert res["dataset"]["is_demo"] is True
    assert res["task"]["name"] == "vqa" and res["task"]["version"]
    results_mod.validate(res)


def test_rerun_generates_nothing_and_gives_equal_results(tmp_path: Path) -> None:
    first = run(tmp_path)
    second = run(tmp_path)
    assert second["timing"]["generated_now"] == 0
    assert second["timing"]["resumed"] == first["n_samples"]
    assert results_mod.comparable_view(first) == results_mod.comparable_view(second)
    assert len(lines(tmp_path / PREDICTIONS)) == first["n_samples"]


def test_baselines_give_different_real_scores(tmp_path: Path) -> None:
    majority = run(tmp_path / "m", model="majority", task="diagnosis")
    retrieval = run(tmp_path / "r", model="retrieval", task="diagnosis")
    assert majority["metrics"]["accuracy"]["value"] != retrieval["metrics"]["accuracy"]["value"]
    assert 0 < majority["metrics"]["accuracy"]["value"] < 1


def _cli(out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "radbench", "run", "--model", "tests.support.adapters:EchoAdapter", "--task", "vqa",
           "--dataset", "demo", "--output", str(out), "--quiet", *extra]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    assert _cli(reference, "--batch-size", "2", "--model-args", "delay=0.05").wait(timeout=120) == 0
    killed = tmp_path / "killed"
    proc = _cli(killed, "--batch-size", "2", "--model-args", "delay=0.05")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        path = killed / PREDICTIONS
        if path.exists() and len(path.read_bytes().splitlines()) >= 10:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    partial = len(read_jsonl(killed / PREDICTIONS)[0])
    assert 10 <= partial < 63, "the kill must land mid-run"
    assert (killed / LOCK).exists(), "a killed run leaves its lock behind"
    resumed = _cli(killed, "--batch-size", "2", "--model-args", "delay=0.05")
    assert resumed.wait(timeout=120) == 0, resumed.stderr.read()
    final = lines(killed / PREDICTIONS)
    ids = [p["id"] for p in final]
    assert len(ids) == len(set(ids)) == 63
    got = json.loads((killed / RESULTS).read_text())
    want = json.loads((reference / RESULTS).read_text())
    assert got["timing"]["resumed"] == partial
    assert results_mod.comparable_view(got) == results_mod.comparable_view(want)
    assert (killed / SCORES).read_bytes() == (reference / SCORES).read_bytes()
    assert (killed / PREDICTIONS).read_bytes() == (reference / PREDICTIONS).read_bytes()


def test_torn_last_line_is_dropped_and_regenerated(tmp_path: Path) -> None:
    full = run(tmp_path)
    path = tmp_path / PREDICTIONS
    data = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(data[:-1]) + data[-1][: len(data[-1]) // 2])
    again = run(tmp_path)
    assert again["timing"]["generated_now"] == 1
    assert results_mod.comparable_view(again) == results_mod.comparable_view(full)
    assert len(lines(path)) == full["n_samples"]


def test_sample_failure_is_recorded_counted_and_retried(tmp_path: Path) -> None:
    bad = "demo-cxr-vqa-test-00002"
    proc = _cli(tmp_path, "--model-args", f"fail_on={bad}")
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    res = json.loads((tmp_path / RESULTS).read_text())
    assert res["failures"]["count"] == 1
    assert bad in res["failures"]["samples"]
    record = next(p for p in lines(tmp_path / PREDICTIONS) if p["id"] == bad)
    assert record["error"] and record["prediction"] == ""
    assert next(s for s in lines(tmp_path / SCORES) if s["id"] == bad)["failed"] is True
    healed = _cli(tmp_path, "--model-args", f"fail_on={bad}", env={"ECHO_HEALED": "1"})
    assert healed.wait(timeout=120) == 0
    res = json.loads((tmp_path / RESULTS).read_text())
    assert res["failures"]["count"] == 0 and res["timing"]["generated_now"] == 1
    assert len(lines(tmp_path / PREDICTIONS)) == res["n_samples"]


def test_second_writer_is_refused_and_stale_lock_taken_over(tmp_path: Path, capsys) -> None:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / LOCK).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    code = main(["run", "--model", "majority", "--task", "vqa", "--dataset", "demo", "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and f"pid {os.getppid()}" in err and len(err.strip().splitlines()) == 1
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    run(tmp_path, model="majority")
    assert not (tmp_path / LOCK).exists()


@pytest.mark.parametrize("task", ["vqa", "report", "rationale", "diagnosis"])
def test_every_demo_task_runs_few_shot(tmp_path: Path, task: str) -> None:
    res = run(tmp_path, "--shots", "2", "--limit", "5", task=task, model="tests.support.adapters:EchoAdapter")
    preds = lines(tmp_path / PREDICTIONS)
    assert res["shots"] == 2 and all(len(p["exemplar_ids"]) == 2 for p in preds)
    assert all(not set(p["exemplar_ids"]) & {p["id"]} for p in preds)
    assert all(e.split("-")[-2] == "train" for p in preds for e in p["exemplar_ids"])


def test_unusable_rows_are_counted_not_scored(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    rows = [{"q": "Which side is the effusion on? left", "ans": "left"}, {"q": "Which lung has the nodule?", "ans": "right"},
            {"q": "Broken row without an answer"}]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "radbench.yaml").write_text("task: vqa\ndata: test.jsonl\ncolumns: {question: q, answer: ans}\nmetrics: [exact_match]\n")
    out = tmp_path / "run"
    code = main(["run", "--model", "tests.support.adapters:EchoAdapter", "--task", "vqa", "--dataset", str(folder),
                 "--output", str(out), "--quiet"])
    assert code == 0
    res = json.loads((out / RESULTS).read_text())
    assert res["n_samples"] == 3 and res["failures"]["count"] == 1
    # The broken row is neither a hit nor a miss: one of two scorable rows matches.
    assert res["metrics"]["exact_match"]["n"] == 2 and res["metrics"]["exact_match"]["value"] == 0.5
    unscored = [s for s in lines(out / SCORES) if s.get("scored") is False]
    assert len(unscored) == 1 and unscored[0]["failed"] is True and "exact_match" not in unscored[0]


def test_prefetched_images_equal_fresh_ones_and_are_used_once(monkeypatch) -> None:
    from radbench import images
    from radbench.images import cache, preprocessing
    from radbench.models.flamingo import PRESET
    from radbench.tasks.demo import DemoDataset

    refs = list(dict.fromkeys(img for s in DemoDataset().load("vqa", "test") for img in s.images))[:6]
    spec = PRESET
    fresh = [images.prepare(ref, spec).array for ref in refs]
    images.prefetch(refs, spec)

    def no_read(ref):
        raise AssertionError(f"cache miss for {ref}")

    monkeypatch.setattr(preprocessing, "read", no_read)
    served = [images.prepare(ref, spec).array for ref in refs]
    assert all((a == b).all() for a, b in zip(served, fresh))
    assert not cache._PREFETCHED  # consumed, not kept


def test_out_of_gpu_memory_halves_the_batch_and_keeps_every_prediction(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    echo = run(tmp_path / "echo", model="tests.support.adapters:EchoAdapter")
    tight = run(tmp_path / "tight", "--batch-size", "4", "--model-args", "fits=1",
                model="tests.support.adapters:TightMemoryAdapter")
    # batch 4 ran out, then 2, then 1 fits for the rest of the run: nothing lost, nothing failed
    assert tight["timing"]["ranks"][0]["batching"] == {
        "batch_size": 4, "final_batch_size": 1,
        "out_of_memory_halvings": [{"at_request": 0, "batch_size": 2}, {"at_request": 0, "batch_size": 1}],
    }
    assert tight["failures"]["count"] == 0 and tight["metrics"] == echo["metrics"]
    assert lines(tmp_path / "tight" / PREDICTIONS) == lines(tmp_path / "echo" / PREDICTIONS)
    assert echo["timing"]["ranks"][0]["batching"]["out_of_memory_halvings"] == []
    results_mod.validate(tight)


def test_a_request_too_big_even_alone_stops_in_one_line_and_resumes(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    echo = tmp_path / "echo"
    run(echo, model="tests.support.adapters:EchoAdapter")
    ids = {p["key"]: p["id"] for p in lines(echo / PREDICTIONS)}
    big = ids[lines(echo / "timings.jsonl")[-1]["keys"][-1]]  # the last request generated (the largest)
    out = tmp_path / "tight"
    code = main(["run", "--model", "tests.support.adapters:TightMemoryAdapter", "--task", "vqa", "--dataset", "demo",
                 "--output", str(out), "--quiet", "--model-args", f"fits=4,never={big}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and "\n" not in err
    kept = lines(out / PREDICTIONS)
    assert "out of GPU memory even alone (batch size 1); " in err and f"{len(kept)} finished predictions are kept" in err
    assert kept and all(p["error"] is None for p in kept) and big not in {p["id"] for p in kept}
    # Another model (or other model-args) into the same directory is refused; deleting run.json adopts
    # the kept predictions deliberately (here: the same echo weights on a larger GPU): only the rest runs.
    assert main(["run", "--model", "tests.support.adapters:EchoAdapter", "--task", "vqa", "--dataset", "demo",
                 "--output", str(out), "--quiet"]) == 2
    assert "holds a run of tests.support.adapters:TightMemoryAdapter" in capsys.readouterr().err
    (out / "run.json").unlink()
    res = run(out, model="tests.support.adapters:EchoAdapter")
    assert res["timing"]["generated_now"] == res["n_samples"] - len(kept) and res["failures"]["count"] == 0
    assert lines(out / PREDICTIONS) == lines(echo / PREDICTIONS)


def test_a_model_too_big_for_its_gpu_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    pytest.importorskip("torch")
    code = main(["run", "--model", "tests.support.adapters:TightMemoryAdapter", "--task", "vqa", "--dataset", "demo",
                 "--output", str(tmp_path), "--quiet", "--model-args", "weights_fit=0,device=cuda:1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "Traceback" not in err and "\n" not in err
    assert "ran out of memory while loading onto cuda:1" in err and "gpus_per_replica=K" in err
