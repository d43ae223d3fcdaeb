"""``radbench leaderboard build``: rankings rebuilt from run files, never typed in by hand.

Every entry comes from a schema-validated ``results.json`` and keeps its provenance (model version,
weight fingerprint, training-data provenance, radbench commit, seeds) and relative links to the
run's files, so a published number can be traced to its per-sample predictions. Entries are ranked
only against runs that measured the same thing: the same task and version, dataset manifest,
prompts, decoding settings and metric configuration (:func:`radbench.results.protocol_differences`).
Mixing is refused with the differing field named, because a leaderboard that silently ranks runs of
two task versions is the failure this file exists to prevent.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence
from urllib.parse import quote

from radbench import __version__, labels, results
from radbench.results import RunData, load_results, protocol_differences
from radbench.errors import UsageError
from radbench import schemas
from radbench.store import PREDICTIONS, RESULTS, SCORES, atomic_write_json, remove_leftover_temporaries

SCHEMA_VERSION = "1"
# A task's metrics in leaderboard order, its primary metric first (empty for a task unknown here).
TaskMetrics = Callable[[str], Sequence[str]]


def collect(paths: Sequence[Path]) -> list[RunData]:
    """Runs named directly (directory or results file), or every run found below a folder of runs."""
    found: dict[Path, RunData] = {}
    for path in paths:
        if path.is_dir() and not (path / RESULTS).is_file():
            files = sorted(path.rglob(RESULTS))
            if not files:
                raise UsageError(f"{path}: no {RESULTS} in this folder or below it")
        else:
            files = [path]
        for file in files:
            run = load_results(file)
            found.setdefault(run.path.resolve(), run)
    return list(found.values())


def _metric_groups(run: RunData, other: RunData) -> set[str]:
    shared = set(run.results["metrics"]) & set(other.results["metrics"])
    return {group for group, cfg in run.results["metric_configs"].items() if shared & set(cfg["ids"])}


def _differences(a: RunData, b: RunData) -> list[str]:
    return protocol_differences(a.results, b.results, _metric_groups(a, b), (str(a.directory), str(b.directory)))


@dataclass
class _Group:
    runs: list[RunData] = field(default_factory=list)
    split_reason: list[str] = field(default_factory=list)


def group_runs(runs: Sequence[RunData], allow_mixed: bool) -> list[_Group]:
    """Runs grouped by (task, dataset); inside one, a run that differs from a group goes elsewhere.

    Without ``allow_mixed`` that is an error naming the difference; with it, the run starts (or
    joins) a separate group that records why it was split off.
    """
    by_key: dict[tuple[str, str], list[_Group]] = {}
    for run in runs:
        key = (run.results["task"]["name"], run.results["dataset"]["name"])
        groups = by_key.setdefault(key, [])
        reasons: list[str] = []
        for group in groups:
            diffs = next((d for d in (_differences(member, run) for member in group.runs) if d), [])
            if not diffs:
                group.runs.append(run)
                break
            reasons = reasons or diffs
        else:
            if groups and not allow_mixed:
                first = groups[0].runs[0]
                raise UsageError(
                    f"cannot rank {first.directory} and {run.directory} together on task {key[0]!r}, dataset "
                    f"{key[1]!r}: {reasons[0]}" + (f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else "")
                    + "; pass --allow-mixed to rank them in separate groups"
                )
            groups.append(_Group([run], reasons))
    return [g for key in sorted(by_key) for g in by_key[key]]


def _link(target: Path, base: Path) -> str | None:
    """A relative, percent-encoded URL from the leaderboard file to a run file (never a scheme)."""
    if not target.exists():
        return None
    return quote(Path(os.path.relpath(target.resolve(), base.resolve())).as_posix(), safe="/", errors="surrogateescape")  # non-UTF-8 names keep their bytes


def _trained_on_dataset(trained_on: str, dataset: str) -> str:
    """``yes``/``no``/``unknown``: did the weights see this dataset's train split?"""
    value = trained_on.strip().lower()
    if value in ("", "unknown"):
        return "unknown"
    return "yes" if dataset.lower() in {v.strip() for v in value.split(",")} else "no"


def _entry(run: RunData, out_dir: Path) -> dict[str, Any]:
    res = run.results
    model = {"trained_on": "unknown", **res["model"]}
    folder = run.directory
    return {
        "model": model,
        "trained_on_dataset": _trained_on_dataset(model["trained_on"], res["dataset"]["name"]),
        "metrics": {m: dict(v) for m, v in res["metrics"].items()},
        "n_samples": res["n_samples"],
        "failures": res["failures"]["count"],
        "provenance": {
            "radbench": res["radbench"],
            "created": res["created"],
            "seed": res["seed"],
            "bootstrap": res["bootstrap"],
            "dataset_limit": res["dataset"].get("limit"),
            "environment": res["environment"],
        },
        "links": {
            "run": _link(folder, out_dir) or ".",
            "results": _link(run.path, out_dir) or RESULTS,
            "scores": _link(folder / SCORES, out_dir),
            "predictions": _link(folder / PREDICTIONS, out_dir),
        },
        "results_sha256": hashlib.sha256(run.path.read_bytes()).hexdigest(),
    }


def _rank(entries: list[dict[str, Any]], metric_id: str, higher_is_better: bool = True) -> None:
    """Competition rank by value, and a rank range from non-overlapping marginal 95% intervals.

    ``rank_range`` [best, worst]: best is 1 + the entries whose interval lies wholly on the better
    side of this one, worst is the count minus those wholly on the worse side. It is conservative
    and unpaired; ``radbench compare`` gives the paired test for any two entries. Error rates
    (``lower_is_better`` in the metric's configuration) rank the smallest value first.
    """
    sign = 1.0 if higher_is_better else -1.0
    rows = [e["metrics"][metric_id] for e in entries if e["metrics"].get(metric_id, {}).get("value") is not None]
    for row in rows:
        row["rank"] = 1 + sum(sign * other["value"] > sign * row["value"] for other in rows)
        if row["ci_low"] is None or row["ci_high"] is None:
            row["rank_range"] = [1, len(rows)]
            continue
        low, high = sorted((sign * row["ci_low"], sign * row["ci_high"]))
        bounds = [sorted((sign * o["ci_low"], sign * o["ci_high"])) for o in rows if o["ci_low"] is not None
                  and o["ci_high"] is not None]
        better = sum(b_low > high for b_low, _ in bounds)
        worse = sum(b_high < low for _, b_high in bounds)
        row["rank_range"] = [1 + better, len(rows) - worse]


def _metric_order(task: str, present: set[str], task_metrics: TaskMetrics | None) -> list[str]:
    """The task's primary metric (it orders the entries), its other default metrics, then any others."""
    defaults = list(task_metrics(task)) if task_metrics else []
    return [m for m in defaults if m in present] + sorted(present - set(defaults))


def _group(index: int, group: _Group, out_dir: Path, task_metrics: TaskMetrics | None) -> dict[str, Any]:
    first = group.runs[0].results
    present = {m for run in group.runs for m in run.results["metrics"]}
    metrics = _metric_order(first["task"]["name"], present, task_metrics)
    configs: dict[str, Any] = {}
    for run in group.runs:
        for name, cfg in run.results["metric_configs"].items():
            configs.setdefault(name, cfg)
    entries = [_entry(run, out_dir) for run in group.runs]
    lower = {m for cfg in configs.values() for m in cfg.get("lower_is_better", [])}
    for metric_id in metrics:
        _rank(entries, metric_id, higher_is_better=metric_id not in lower)
    primary = metrics[0] if metrics else None
    sign = -1.0 if primary in lower else 1.0

    def order(entry: dict[str, Any]) -> tuple[Any, ...]:
        row = entry["metrics"].get(primary or "", {})
        return (row.get("value") is None, -sign * (row.get("value") or 0.0), entry["model"]["name"])

    entries.sort(key=order)
    dataset = first["dataset"]
    return {
        "id": f"g{index}-{first['task']['name']}-{dataset['name']}-{dataset['manifest_hash'][:8]}",
        "task": {"name": first["task"]["name"], "version": first["task"]["version"]},
        "dataset": {k: dataset[k] for k in ("name", "split", "manifest_hash", "is_demo")},
        "protocol": {
            "shots": first["shots"],
            "prompt_hash": first["prompt_hash"],
            "exemplar_manifest_hash": first.get("exemplar_manifest_hash") if first["shots"] > 0 else None,
            "gen_kwargs": first["gen_kwargs"],
        },
        "metric_configs": configs,
        "metric_labels": labels.metric_labels(metrics, configs),
        "metrics": metrics,
        "primary_metric": primary,
        "split_reason": group.split_reason,
        "entries": entries,
    }


def build(paths: Sequence[Path], output: Path, allow_mixed: bool = False, title: str | None = None, *,
          check: Callable[[RunData], None] | None = None, task_metrics: TaskMetrics | None = None) -> dict[str, Any]:
    """Build, validate and write ``leaderboard.json``; returns it.

    ``check`` cross-checks each run's published numbers before it is ranked and ``task_metrics``
    names a task's metrics, primary first; both come from the caller (radbench/board.py wires
    radbench/verify.py and the task registry), so this folder needs neither the metrics nor the tasks.
    """
    runs = collect(paths)
    if not runs:
        raise UsageError("no runs given")
    for run in runs:  # a summary that its own per-sample scores contradict is never ranked
        if check is not None:
            check(run)
    groups = group_runs(runs, allow_mixed)
    out_dir = output.parent if str(output.parent) else Path(".")
    board = {
        "schema_version": SCHEMA_VERSION,
        "kind": "radbench-leaderboard",
        "title": title or "radbench leaderboard",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "radbench": {"version": __version__, "git_commit": results.git_commit()},
        "allow_mixed": allow_mixed,
        "groups": [_group(i, g, out_dir, task_metrics) for i, g in enumerate(groups, start=1)],
    }
    schemas.validate(board, "leaderboard")
    remove_leftover_temporaries(output)  # a build killed mid-write (SIGKILL, SIGTERM) left its temporary
    atomic_write_json(output, board)
    return board


def load(path: Path) -> dict[str, Any]:
    """A leaderboard file, validated (the HTML page renders only what the schema promises)."""
    import jsonschema

    try:
        board = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from None
    try:
        schemas.validate(board, "leaderboard")
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise UsageError(f"{path}: not a radbench leaderboard ({where}: {exc.message})") from None
    return board
