"""``radbench sweep``: evaluate every checkpoint of a training run and show the trend with CIs.

Each checkpoint gets its own run directory under ``--output``, so a sweep resumes like a run does
(content-keyed predictions: re-running after new checkpoints land evaluates only the new ones).
Every checkpoint is then compared with the baseline (the first checkpoint, or ``--baseline``) by the
same paired bootstrap as ``radbench compare``, so "step 3000 is worse" means a significant paired
drop, not two overlapping intervals eyeballed from a plot.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from radbench import __version__, compare
from radbench.errors import UsageError
from radbench.options import parse_kv
from radbench.results import load_results
from radbench import schemas
from radbench.runner import RunConfig, run
from radbench.store import RESULTS, atomic_write_json

TREND = "sweep.json"


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    name: str
    step: int | None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.replace(os.sep, "__")).strip("_") or "checkpoint"


def find_checkpoints(pattern: str) -> list[Checkpoint]:
    """Matches of ``pattern``, ordered by training step (the last number in the path), then name.

    Names are the paths relative to the matches' common folder, so ``runs/*/model.safetensors``
    still gives every checkpoint its own run directory.
    """
    matches = sorted(glob.glob(os.path.expanduser(pattern)))
    if not matches:
        raise UsageError(f"--checkpoints {pattern!r} matches nothing")
    root = os.path.commonpath(matches) if len(matches) > 1 else os.path.dirname(matches[0])
    out = []
    for match in matches:
        relative = os.path.relpath(match, root) if root else match
        if relative == ".":
            relative = os.path.basename(match)
        numbers = re.findall(r"\d+", relative)
        out.append(Checkpoint(Path(match), relative, int(numbers[-1]) if numbers else None))
    return sorted(out, key=lambda c: (c.step is None, c.step or 0, c.name))


def _model_args(base: str | Mapping[str, str] | None, key: str, checkpoint: Path) -> dict[str, str]:
    """The sweep's model-args with this checkpoint's path under ``key``, as a mapping (any path works)."""
    return {**parse_kv(base, "--model-args"), key: str(checkpoint)}


def _trend_row(checkpoint: Checkpoint | None, run_data: compare.RunData, diffs: dict[str, compare.MetricDiff] | None,
               metric_ids: Sequence[str]) -> dict[str, Any]:
    metrics = {}
    for metric_id in metric_ids:
        m = run_data.results["metrics"][metric_id]
        d = diffs.get(metric_id) if diffs is not None else None
        metrics[metric_id] = {
            "value": m["value"], "ci_low": m["ci_low"], "ci_high": m["ci_high"], "n": m["n"],
            "diff": d.diff if d else None, "diff_ci_low": d.ci_low if d else None,
            "diff_ci_high": d.ci_high if d else None, "p_value": d.p_value if d else None,
            "p_adjusted": d.p_adjusted if d else None,
            "status": d.status if d else "baseline",
        }
    return {
        "name": checkpoint.name if checkpoint else run_data.directory.name,
        "path": str(checkpoint.path) if checkpoint else None,
        "step": checkpoint.step if checkpoint else None,
        "run": str(run_data.directory),
        "baseline": diffs is None,
        "model": run_data.results["model"],
        "metrics": metrics,
    }


def sweep(
    config: RunConfig,
    checkpoints: str,
    checkpoint_arg: str = "checkpoint",
    baseline: Path | None = None,
    min_effect: float = 0.0,
    iterations: int = compare.DEFAULT_ITERATIONS,
) -> dict[str, Any]:
    """Run (or resume) every checkpoint, compare each with the baseline, write ``sweep.json``.

    ``config`` is a run configuration without the checkpoint; its ``output`` is the sweep folder.
    ``baseline`` is a checkpoint path (evaluated like the others) or an existing run directory.
    """
    found = find_checkpoints(checkpoints)
    if checkpoint_arg in parse_kv(config.model_args, "--model-args"):
        raise UsageError(f"--model-args already sets {checkpoint_arg!r}; the sweep sets it per checkpoint")

    def evaluate(ck: Checkpoint, folder: str) -> compare.RunData:
        cfg = RunConfig(**{**vars(config), "output": config.output / folder,
                           "model_args": _model_args(config.model_args, checkpoint_arg, ck.path)})
        run(cfg)
        return compare.load_run(cfg.output)

    runs = [(ck, evaluate(ck, _slug(ck.name))) for ck in found]
    base_index: int | None = 0
    extra: tuple[Checkpoint | None, compare.RunData] | None = None
    if baseline is not None:
        if (baseline / RESULTS).is_file():  # an existing run, e.g. the released model's
            base_index, extra = None, (None, compare.load_run(baseline))
        elif baseline.exists():
            base_index = next((i for i, (ck, _) in enumerate(runs) if ck.path.resolve() == baseline.resolve()), None)
            if base_index is None:
                ck = Checkpoint(baseline, baseline.name, None)
                extra = (ck, evaluate(ck, "baseline-" + _slug(baseline.name)))
        else:
            raise UsageError(f"--baseline {baseline}: neither a checkpoint nor a radbench run directory")
    base_ck, base_run = extra if extra is not None else runs[base_index or 0]

    metric_ids = list(base_run.results["metrics"])
    rows = [] if extra is None else [_trend_row(base_ck, base_run, None, metric_ids)]
    for i, (ck, run_data) in enumerate(runs):
        if extra is None and i == base_index:
            rows.append(_trend_row(ck, run_data, None, metric_ids))
            continue
        result = compare.compare(base_run, run_data, metric_ids, min_effect, iterations, config.seed)
        if result.incomparable:
            raise UsageError(f"{run_data.directory} is not comparable with the baseline: {result.incomparable[0]}")
        rows.append(_trend_row(ck, run_data, {m.metric: m for m in result.metrics}, metric_ids))
    first = base_run.results
    trend = {
        "schema_version": "1",
        "kind": "radbench-sweep",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "radbench": __version__,
        "model": config.model,
        "task": first["task"],
        "dataset": {k: first["dataset"][k] for k in ("name", "split", "manifest_hash", "is_demo")},
        "checkpoints_glob": checkpoints,
        "baseline": next(r["name"] for r in rows if r["baseline"]),
        "min_effect": min_effect,
        "bootstrap": {"iterations": iterations, "seed": config.seed, "level": compare.DEFAULT_LEVEL,
                      "method": "paired percentile"},
        "metrics": metric_ids,
        "checkpoints": rows,
    }
    schemas.validate(trend, "sweep")
    atomic_write_json(config.output / TREND, trend)
    return trend


def print_trend(trend: dict[str, Any]) -> None:
    """One row per checkpoint and metric (value [CI], change against the baseline), then the legend."""
    from radbench.tables import print_sweep

    print_sweep(trend, [load_results(Path(row["run"])).results for row in trend["checkpoints"]])
