"""Leaderboard orchestration: the plugin in leaderboard/ builds and renders; this module supplies what
it must not import itself.

``leaderboard build`` ranks only runs whose published numbers agree with their own per-sample
scores (:mod:`radbench.verify`, which needs the metrics) and orders each task's columns by the
task's primary metric (which needs the task registry). Both are passed in here, so the plugin folder
depends on the contracts alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from radbench import registry, verify
from radbench.errors import UsageError


def task_metrics(task: str) -> list[str]:
    """``task``'s metrics in leaderboard order: its primary metric, then its other defaults."""
    try:
        cls = registry.get("tasks", task)
    except UsageError:  # a task from a plugin that is not installed here: columns in name order
        return []
    primary = getattr(cls, "primary_metric", "")
    return ([primary] if primary else []) + [m for m in cls.default_metrics if m != primary]


def build(paths: Sequence[Path], output: Path, allow_mixed: bool = False, title: str | None = None) -> dict[str, Any]:
    """Verify, group, rank and write ``leaderboard.json`` (see radbench/leaderboard/build.py)."""
    return registry.service("leaderboard.build")(paths, output, allow_mixed, title, check=verify.check,
                                                 task_metrics=task_metrics)


def write_html(board: Path, output: Path) -> None:
    registry.service("leaderboard.html")(board, output)
