"""``results.json``: aggregates with confidence intervals, and everything needed to trust them.

Results are derived from ``predictions.jsonl`` and ``scores.jsonl`` alone. Each file carries its
provenance (radbench version and commit, model fingerprint, task version, dataset manifest hash,
prompt hash, metric configurations, seeds, library versions) and validates against
``radbench/schemas/results.schema.json`` before it is written.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from radbench import __version__
from radbench.scoring import ScoreReport
from radbench.store import atomic_write_json

SCHEMA_VERSION = "1"
LIBRARIES = ("numpy", "torch", "transformers", "rouge-score", "nltk", "bert-score", "pillow", "pydicom", "nibabel")
VOLATILE_KEYS = ("created", "timing")


@lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the radbench source in use, with ``-dirty`` for uncommitted changes."""
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment() -> dict[str, Any]:
    return {"python": sys.version.split()[0], "platform": platform.platform(), "libraries": library_versions()}


def build(report: ScoreReport, provenance: dict[str, Any], failures: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "radbench": {"version": __version__, "git_commit": git_commit()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **provenance,
        "metrics": report.metrics,
        "subsets": report.subsets,
        "metric_configs": report.configs,
        "bootstrap": report.bootstrap,
        "failures": failures,
        "timing": timing,
        "environment": environment(),
    }


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    text = resources.files("radbench.schemas").joinpath("results.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


def validate(results: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``results`` does not match the schema (a radbench bug)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(_validator().iter_errors(results))
    if error is not None:
        raise error


def write(path: Path, results: dict[str, Any]) -> None:
    validate(results)
    atomic_write_json(path, results)


def comparable_view(results: dict[str, Any]) -> dict[str, Any]:
    """Results without the fields that legitimately differ between identical runs."""
    return {k: v for k, v in results.items() if k not in VOLATILE_KEYS}
