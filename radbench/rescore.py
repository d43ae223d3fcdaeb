"""``radbench score``: score predictions that another tool produced.

Two input formats:

* JSONL, one object per line with ``id``, ``prediction``, ``reference`` (a string or a list of
  strings), and optionally ``dataset`` (used as the subset for per-dataset breakdowns),
  ``study_id`` / ``patient_id`` (bootstrap clusters), ``options`` and ``question``.
* The CSV RadFM's ``src/test.py`` writes: columns ``Question``, ``Ground Truth``, ``Pred``,
  ``belong_to``, each cell a Python list literal such as ``"['No pneumothorax.']"``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from radbench import registry, results, safe_io, scoring
from radbench.errors import UsageError
from radbench.metrics.base import ScoreInput
from radbench.options import MetricSettings
from radbench.runner import load_task
from radbench.store import RESULTS, SCORES, read_jsonl, write_jsonl
from radbench.types import identifier, stable_hash

RADFM_COLUMNS = ("Question", "Ground Truth", "Pred", "belong_to")


def _cell(path: Path, row: int, column: str, text: str) -> str:
    """A RadFM CSV cell: a one-element list literal (as their DataLoader wrote it) or plain text."""
    if not text.startswith("["):
        return text
    try:
        value = safe_io.literal_eval(text)
    except safe_io.UnsafeInput as exc:
        raise UsageError(f"{path}: row {row}, column {column!r}: {exc}: {text[:60]!r}") from None
    except (ValueError, SyntaxError):
        raise UsageError(f"{path}: row {row}, column {column!r}: not a Python list literal: {text[:60]!r}") from None
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], str):
        raise UsageError(f"{path}: row {row}, column {column!r}: expected a one-string list, got {text[:60]!r}")
    if any("\ud800" <= ch <= "\udfff" for ch in value[0]):
        raise UsageError(f"{path}: row {row}, column {column!r}: a lone surrogate escape is not text: {text[:60]!r}")
    return value[0]


def read_radfm_csv(path: Path) -> list[dict[str, Any]]:
    out = []
    for row, r in registry.service("radfm.csv_rows")(path, RADFM_COLUMNS):
        subset = _cell(path, row, "belong_to", r["belong_to"])
        out.append(
            {
                "id": f"{subset}-{row:05d}",
                "question": _cell(path, row, "Question", r["Question"]),
                "reference": _cell(path, row, "Ground Truth", r["Ground Truth"]),
                "prediction": _cell(path, row, "Pred", r["Pred"]),
                "dataset": subset,
            }
        )
    return out


def read_prediction_jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        records, torn = read_jsonl(path)
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    if torn:
        # Files from other tools often end without a newline: a last line that is a whole JSON
        # object is taken; half an object (a crashed writer) is an error, never half-parsed.
        last = path.read_bytes().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        try:
            tail = safe_io.loads_json(last.decode("utf-8"), allow_nan=True)
        except (ValueError, UnicodeDecodeError):
            tail = None
        if not isinstance(tail, dict):
            raise UsageError(f"{path}: the last line is incomplete (a crashed writer?); fix or remove it")
        records.append(tail)
    for number, rec in enumerate(records, start=1):
        missing = [k for k in ("id", "prediction", "reference") if k not in rec]
        if missing:
            raise UsageError(f"{path}: record {number} lacks {', '.join(missing)}")
        problem = _record_problem(rec)
        if problem:
            raise UsageError(f"{path}: record {number}: {problem}")
    return records


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _record_problem(rec: dict[str, Any]) -> str | None:
    """What makes a JSONL record unusable, so no field is silently turned into other text (None, a list)."""
    if isinstance(rec["id"], bool) or not isinstance(rec["id"], (str, int)):
        return f"'id' must be a string or an integer, got {json.dumps(rec['id'])[:60]}"
    if rec["prediction"] is not None and not isinstance(rec["prediction"], str):
        return "'prediction' must be a string (or null for no answer)"
    if not (isinstance(rec["reference"], str) or (_strings(rec["reference"]) and rec["reference"])):
        return "'reference' must be a string or a non-empty list of strings"
    if rec.get("options") is not None and not _strings(rec["options"]):
        return "'options' must be a list of strings"
    if rec.get("metadata") is not None and not isinstance(rec["metadata"], dict):
        return "'metadata' must be an object"
    for key in ("question", "dataset", "study_id", "patient_id"):
        if isinstance(rec.get(key), (list, dict)):
            return f"{key!r} must be a string"
    try:
        json.dumps(rec, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return "holds a lone surrogate escape (such as \\ud800), which is not text"
    return None


def score_file(path: Path, task_name: str, metrics: str | None, output: Path, seed: int,
               metric_args: MetricSettings | None = None, name: str | None = None) -> dict[str, Any]:
    """Score a predictions file. The dataset is named by a hash of its ids and references (never the
    file name), so two models' files for one test set compare; ``name`` is the model name recorded."""
    if name is not None and not name.strip():
        raise UsageError("--name must not be empty")
    if not path.is_file():
        raise UsageError(f"{path}: file not found")
    task = load_task(task_name)
    metric_ids = scoring.parse_metric_list(metrics, task.default_metrics)
    records = read_radfm_csv(path) if path.suffix.lower() == ".csv" else read_prediction_jsonl(path)
    if not records:
        raise UsageError(f"{path}: no predictions")
    seen: set[str] = set()
    scored = []
    for rec in records:
        sample_id = str(rec["id"])
        if sample_id in seen:
            raise UsageError(f"{path}: duplicate id {sample_id!r}")
        seen.add(sample_id)
        refs = rec["reference"] if isinstance(rec["reference"], list) else [rec["reference"]]
        options = tuple(rec.get("options") or ())
        answer_type = "closed" if options or str(refs[0]).strip().lower() in ("yes", "no") else "open"
        item = ScoreInput(sample_id, str(rec["prediction"] or ""), tuple(str(r) for r in refs), options, answer_type,
                          str(rec.get("question", "")), str(rec.get("dataset") or ""), dict(rec.get("metadata") or {}))
        cluster = identifier(rec.get("patient_id")) or identifier(rec.get("study_id")) or sample_id
        scored.append(scoring.Scored(item, subset=str(rec.get("dataset") or ""), cluster=cluster))
    report = scoring.score(scored, metric_ids, seed=seed, settings=metric_args)
    if all(m["n"] == 0 for m in report.metrics.values()):
        # e.g. report rows under --task diagnosis: accuracy is defined only for closed questions (a
        # yes/no reference or answer options), so every row is skipped and n=0 would read as a result.
        raise UsageError(f"{path}: none of its {len(scored)} rows can be scored by {', '.join(metric_ids)} "
                         f"(task {task_name!r}); are these predictions for another --task?")
    output.mkdir(parents=True, exist_ok=True)
    write_jsonl(output / SCORES, report.records)
    file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
    by_id = sorted(scored, key=lambda s: s.item.id)  # row order is not part of a test set's identity
    manifest = stable_hash([[s.item.id, list(s.item.references)] for s in by_id])
    provenance = {
        "task": task.describe(),
        "dataset": {"name": f"external:{manifest[:16]}", "split": "test", "manifest_hash": manifest,
                    "is_demo": False, "limit": None},
        "model": {"name": name.strip() if name else "external", "version": "n/a",
                  "fingerprint": f"predictions-sha256:{file_hash}"},
        "n_samples": len(scored),
        "seed": seed,
        "shots": 0,
        "gen_kwargs": {},
        "prompt_hash": stable_hash([s.item.question for s in by_id]),
        "source": {"path": str(path), "format": "radfm-csv" if path.suffix.lower() == ".csv" else "jsonl"},
    }
    failures = {"count": 0, "policy": "scored as given; empty predictions score 0", "samples": {}}
    out = results.build(report, provenance, failures, {})
    results.write(output / RESULTS, out)
    return out



