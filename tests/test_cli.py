"""The command line contract: names, exit codes, one-line errors, and a cheap start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from radbench.cli import main

MODELS = ("radfm", "medflamingo", "openflamingo", "llava-med", "medvint", "majority", "retrieval")


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "radbench", *args], capture_output=True, text=True, timeout=120)


def test_list_and_help_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from radbench.cli import main\n"
        "for kind in ('models', 'tasks', 'datasets', 'metrics'):\n"
        "    main(['list', kind])\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "HEAVY []" in out.stdout


def test_list_models_piped_is_one_name_per_line() -> None:
    out = run_cli("list", "models")
    assert out.returncode == 0
    names = out.stdout.split()
    for name in MODELS:
        assert name in names
    assert all(" " not in line for line in out.stdout.splitlines())


def test_a_closed_pipe_ends_quietly() -> None:
    """``radbench list models | head -1``: the reader is gone before radbench writes; no traceback."""
    import os

    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "radbench", "list", "models"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write)
    assert proc.returncode == 141 and proc.stderr == ""


def test_list_tasks_and_metrics() -> None:
    tasks = run_cli("list", "tasks").stdout.split()
    assert {"vqa", "report", "rationale", "diagnosis"} <= set(tasks)
    metrics = run_cli("list", "metrics").stdout.split()
    assert {"bleu1", "bleu4", "rouge1", "rouge2", "rougeL", "accuracy"} <= set(metrics)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--model", "no-such-model", "--task", "vqa"], "unknown model 'no-such-model'; available:"),
        (["--model", "majority", "--task", "no-such-task"], "unknown task 'no-such-task'; available:"),
        (["--model", "majority", "--task", "vqa", "--dataset", "nope"], "unknown dataset 'nope'; available:"),
        (["--model", "majority", "--task", "vqa", "--dataset", "demo", "--metrics", "bleu9"], "unknown metric 'bleu9'"),
        (["--model", "retrieval", "--task", "vqa", "--dataset", "demo", "--model-args", "image_weight"], "--model-args"),
        (["--model", "majority", "--task", "vqa", "--dataset", "demo", "--shots", "-1"], "--shots"),
        (["--model", "radfm", "--task", "rationale", "--dataset", "demo"], "checkpoint=chaoyi-wu/RadFM"),
        (["--model", "radfm", "--task", "vqa", "--dataset", "demo", "--model-args", "checkpoint=/nonexistent/radfm"],
         "/nonexistent/radfm"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, args, needle) -> None:
    code = main(["run", *args, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_radfm_without_checkpoint_names_its_released_repo_offline(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert main(["run", "--model", "radfm", "--task", "vqa", "--dataset", "demo", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "chaoyi-wu/RadFM is not in the cache" in err and "empty-cache" in err and "HF_HUB_OFFLINE=1" in err


@pytest.mark.parametrize(
    ("args", "suggestion"),
    [
        (["--model", "majorty", "--task", "vqa"], "did you mean 'majority'?"),
        (["--model", "majority", "--task", "vqaa"], "did you mean 'vqa'?"),
        (["--model", "majority", "--task", "vqa", "--dataset", "vqa_rad"], "did you mean 'vqa-rad'"),
        (["--model", "majority", "--task", "vqa", "--dataset", "demo", "--metrics", "acuracy"],
         "did you mean 'accuracy'"),
        (["--model", "majority", "--task", "VQA"], "did you mean 'vqa'?"),
    ],
)
def test_unknown_names_suggest_the_closest_in_one_line(tmp_path, capsys, args, suggestion) -> None:
    code = main(["run", *args, "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and suggestion in err and len(err.strip().splitlines()) == 1


def test_a_name_far_from_every_known_one_gets_no_suggestion(tmp_path, capsys) -> None:
    assert main(["run", "--model", "zzzzzz", "--task", "vqa", "--output", str(tmp_path / "out")]) == 2
    assert "did you mean" not in capsys.readouterr().err
