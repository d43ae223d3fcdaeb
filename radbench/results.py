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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from radbench import __version__
from radbench import labels, safe_io
from radbench.errors import UsageError
from radbench.security import redact
from radbench.store import RESULTS, SCORES, atomic_write_json, read_jsonl

if TYPE_CHECKING:
    from radbench.scoring import ScoreReport

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


def provenance(*, task: dict[str, Any], dataset: dict[str, Any], model: dict[str, Any], n_samples: int, seed: int,
               shots: int, config: dict[str, Any], gen_kwargs: dict[str, Any], prompt_hash: str,
               exemplar_manifest_hash: str | None, prompts: dict[str, Any], data_options: dict[str, Any],
               preprocessing: dict[str, Any] | None) -> dict[str, Any]:
    """The provenance part of ``results.json``: what was run, on what, with which settings and seeds.

    One seed drives every random choice of a run, so the per-library seeds are recorded as that seed;
    the run configuration is redacted (an ``api_key=`` model-arg, a key inside a URL).
    """
    return {
        "task": task,
        "dataset": dataset,
        "model": model,
        "n_samples": n_samples,
        "seed": seed,
        "seeds": {"python": seed, "numpy": seed, "torch": seed, "fewshot_sampler": seed, "bootstrap": seed},
        "shots": shots,
        "config": redact(config),
        "gen_kwargs": gen_kwargs,
        "prompt_hash": prompt_hash,
        "exemplar_manifest_hash": exemplar_manifest_hash,
        "prompts": prompts,
        "data_options": data_options,
        "preprocessing": preprocessing,
    }


def build(report: ScoreReport, provenance: dict[str, Any], failures: dict[str, Any], timing: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "radbench": {"version": __version__, "git_commit": git_commit()},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **provenance,
        "metrics": report.metrics,
        "subsets": report.subsets,
        "metric_configs": report.configs,
        "metric_labels": labels.metric_labels(report.metrics, report.configs),
        "bootstrap": report.bootstrap,
        "warnings": report.warnings,
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


# Fields that must be equal for two numbers to measure the same thing, as dotted paths into
# results.json. The model is deliberately absent: comparing models is the point.
PROTOCOL_FIELDS = (
    "task.name",
    "task.version",
    "dataset.name",
    "dataset.split",
    "dataset.manifest_hash",
    "prompt_hash",
    "shots",
    "gen_kwargs",
)
# Fields that may differ but that a reader of a comparison should see when they do.
CONTEXT_FIELDS = (
    "model.name",
    "model.version",
    "model.fingerprint",
    "model.trained_on",
    "radbench.version",
    "radbench.git_commit",
    "seed",
    "failures.count",
)


@dataclass
class RunData:
    """A run as compare and the leaderboard see it: its results and, when needed, per-sample scores."""

    path: Path
    results: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.path.parent if self.path.is_file() else self.path


def results_path(path: Path) -> Path:
    """``results.json`` of a run directory, or the file itself."""
    return path / RESULTS if path.is_dir() else path


def load_results(path: Path) -> RunData:
    """A run's schema-validated results; a file that is not radbench's is a usage error naming it."""
    import jsonschema

    file = results_path(path)
    if not file.is_file():
        raise UsageError(f"{path}: no {RESULTS} (expected a run directory or a results file)")
    try:
        data = safe_io.loads_json(file.read_text(encoding="utf-8"))  # NaN/Infinity and deep nesting refused
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file}: not JSON ({exc})") from None
    if isinstance(data, dict) and "radbench" in data and data.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(f"{file}: results schema_version {data.get('schema_version')!r}, but this radbench reads "
                         f"{SCHEMA_VERSION!r} (another radbench version wrote it; re-run it with this one)")
    try:
        validate(data)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "top level"
        raise UsageError(f"{file}: not a radbench results file ({where}: {exc.message})") from None
    return RunData(file, data)


def load_run(path: Path) -> RunData:
    """Results plus the per-sample records of ``scores.jsonl`` next to them."""
    run = load_results(path)
    scores = run.path.parent / SCORES
    if not scores.is_file():
        raise UsageError(f"{run.path.parent}: no {SCORES}; a paired comparison needs per-sample scores")
    records, torn = read_jsonl(scores)
    if torn:
        raise UsageError(f"{scores}: the last line is incomplete; re-run `radbench run` on this directory")
    seen: set[str] = set()
    for record in records:
        sample_id = record.get("id")
        if not isinstance(sample_id, str) or sample_id in seen:
            raise UsageError(f"{scores}: missing or duplicate sample id {sample_id!r}")
        seen.add(sample_id)
    # Rows the dataset itself could not provide (no reference) were never scored; they are
    # counted as failures in results.json and have nothing to pair.
    run.records = [r for r in records if r.get("scored", True)]
    return run


def _get(obj: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)  # type: ignore[assignment]
    return obj


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    """Nested dicts as dotted keys, so a difference names the exact setting (``...bleu.tokenizer``)."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key in sorted(value):
        out.update(_flatten(f"{prefix}.{key}", value[key]))
    return out or {prefix: {}}


def protocol(res: dict[str, Any], metric_groups: Iterable[str]) -> dict[str, Any]:
    """The settings that decide what a number measures, as ``{dotted path: value}``.

    The exemplar manifest counts only with few-shot prompts: with ``shots=0`` a baseline may learn
    from the train split, but the prompts (and so what is measured) do not depend on it.
    """
    out: dict[str, Any] = {}
    for dotted in PROTOCOL_FIELDS:
        out.update(_flatten(dotted, _get(res, dotted)))
    # Whose decoding, stop rule and answer selection the model followed (``--model-args protocol=``);
    # adapters without the choice, and runs recorded before it existed, followed radbench's.
    out["model.protocol"] = _get(res, "model.protocol") or "radbench"
    if res.get("shots", 0) > 0:
        out["exemplar_manifest_hash"] = res.get("exemplar_manifest_hash")
    for group in sorted(metric_groups):
        out.update(_flatten(f"metric_configs.{group}", res["metric_configs"].get(group)))
    return out


def short(value: Any) -> str:
    """A value as one short line for a difference report: a SHA-256 cut to 12 characters, long text to 60."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if not isinstance(value, str) else value
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"
    return text if len(text) <= 60 else text[:57] + "…"


def protocol_differences(
    a: dict[str, Any], b: dict[str, Any], metric_groups: Iterable[str], names: tuple[str, str] = ("base", "new")
) -> list[str]:
    """One line per setting that differs, e.g. ``dataset.manifest_hash: 4434b359… (base) vs 9f8e… (new)``.

    A metric group whose concept source or encoder differs gets one line naming it,
    ``umls source: HPO index (base) vs scispaCy UMLS (new)``, in place of the settings that source
    decides (backend, index, matcher...): the reader learns why the numbers differ in kind, not
    which of a dozen paths changed with it.
    """
    groups = list(metric_groups)
    pa, pb = protocol(a, groups), protocol(b, groups)
    keys = list(pa) + [k for k in pb if k not in pa]
    lines: dict[str, str] = {}
    for group in sorted(groups):
        sa = labels.source(a["metric_configs"].get(group))
        sb = labels.source(b["metric_configs"].get(group))
        if sa != sb:
            kind, subtree = (sa or sb).kind, (sa or sb).subtree  # type: ignore[union-attr]
            prefix = f"metric_configs.{group}" + (f".{subtree}" if subtree else "")
            lines[prefix] = (f"{group} {kind}: {sa.text if sa else 'not recorded'} ({names[0]}) vs "
                             f"{sb.text if sb else 'not recorded'} ({names[1]})")
    out: list[str] = []
    for key in keys:
        if pa.get(key) == pb.get(key):
            continue
        prefix = next((p for p in lines if key == p or key.startswith(p + ".")), None)
        if prefix is None:
            out.append(f"{key}: {short(pa.get(key))} ({names[0]}) vs {short(pb.get(key))} ({names[1]})")
        elif lines[prefix] not in out:
            out.append(lines[prefix])
    return out


def context_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [
        f"{key}: {short(_get(a, key))} (base) vs {short(_get(b, key))} (new)"
        for key in CONTEXT_FIELDS
        if _get(a, key) != _get(b, key)
    ]
