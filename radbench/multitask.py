"""Several tasks in one ``radbench run``: ``--task vqa,report,rationale`` or ``--task all``.

Each task is an ordinary run in its own directory, ``--output/TASK``, so resume, the run identity and
``leaderboard build`` (which finds runs below a folder) work per task. Every task name and every task
directory is checked before the first task starts, so a typo or a directory holding another run stops
the command before anything is generated. The summary (one row per task: its dataset, samples,
failures and metrics) goes to ``--output/summary.json``; the CLI prints it as a table.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from radbench import identity, registry
from radbench.errors import UsageError
from radbench.runner import RunConfig

SUMMARY = "summary.json"
ALL = "all"


def task_list(text: str, dataset: str | None) -> list[str] | None:
    """The tasks ``--task`` names when it names several (``a,b`` or ``all``); ``None`` for one task."""
    if text.strip() == ALL:
        if not dataset:
            raise UsageError("--task all needs --dataset (every task that dataset has)")
        return list(registry.get("datasets", dataset)().tasks)
    if "," not in text:
        return None
    names = [t.strip() for t in text.split(",")]
    if any(not t for t in names):
        raise UsageError(f"--task {text!r}: an empty task name in the list")
    duplicated = sorted({t for t in names if names.count(t) > 1})
    if duplicated:
        raise UsageError(f"--task {text!r}: {duplicated[0]!r} is named twice")
    return names


def _check(config: RunConfig, tasks: list[str]) -> None:
    """Every task known and covered by its dataset, every task directory free: before anything runs."""
    identity.check_output(config.output)
    for task in tasks:
        task_cls = registry.get("tasks", task)
        name = config.dataset or task_cls.default_dataset
        covered = registry.get("datasets", name)().tasks
        if task not in covered:
            raise UsageError(f"dataset {name!r} has no task {task!r}; it covers {', '.join(covered)}")
        identity.check(replace(config, task=task, output=config.output / task))


def run_tasks(config: RunConfig, tasks: list[str],
              run: Callable[[RunConfig], dict[str, Any] | None]) -> list[tuple[str, dict[str, Any]]]:
    """Run each task into ``config.output/TASK``; the results by task (empty on non-main ranks)."""
    _check(config, tasks)
    done: list[tuple[str, dict[str, Any]]] = []
    for task in tasks:
        res = run(replace(config, task=task, output=config.output / task))
        if res is not None:
            done.append((task, res))
    if done:
        write_summary(config.output, config.model, done)
    return done


def summary(model: str, done: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One row per task: where its run is, its dataset, sample and failure counts, every metric with its CI."""
    rows = []
    for task, res in done:
        rows.append({
            "task": task,
            "run": task,
            "dataset": res["dataset"]["name"],
            "n_samples": res["n_samples"],
            "failed": res["failures"]["count"],
            "metrics": {m: {k: v.get(k) for k in ("value", "ci_low", "ci_high", "n")} for m, v in res["metrics"].items()},
        })
    return {"model": model, "tasks": rows}


def write_summary(output: Path, model: str, done: list[tuple[str, dict[str, Any]]]) -> Path:
    path = output / SUMMARY
    tmp = path.with_name(f".{SUMMARY}.tmp")
    tmp.write_text(json.dumps(summary(model, done), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
