"""``radbench compare``: is NEW worse than BASE by more than sampling noise explains?

Two runs are only compared when they measured the same thing: same task and version, same dataset
manifest, same prompts and exemplars, same decoding settings and the same configuration of every
compared metric. :func:`protocol_differences` names the first field that differs (the leaderboard
uses the same check), because "a different number" is useless without "because the prompt changed".

Comparable runs get a *paired* bootstrap over the sample ids both scored: each resample draws the
same ids (whole patients or studies when ``scores.jsonl`` has cluster ids) from both runs and
re-applies each metric's own aggregate, so the interval is of the difference in the reported number
(corpus BLEU included), not of a per-sample proxy. Pairing removes the between-sample variance that
both runs share, which is what makes a 3-point drop on 500 samples detectable at all.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from radbench import registry, results, scoring
from radbench.errors import UsageError
from radbench.stats import DEFAULT_ITERATIONS, DEFAULT_LEVEL, cluster_draws, draw_weights, percentile_ci
from radbench import schemas
from radbench.store import RESULTS, SCORES, atomic_write_json, read_jsonl

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
WEIGHT_BLOCK = 200  # resamples per weight matrix: bounds memory at 200 x n floats


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
        data = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{file}: not JSON ({exc})") from None
    if isinstance(data, dict) and "radbench" in data and data.get("schema_version") != results.SCHEMA_VERSION:
        raise UsageError(f"{file}: results schema_version {data.get('schema_version')!r}, but this radbench reads "
                         f"{results.SCHEMA_VERSION!r} (another radbench version wrote it; re-run it with this one)")
    try:
        results.validate(data)
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


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False) if not isinstance(value, str) else value
    if len(text) == 64 and all(c in "0123456789abcdef" for c in text):
        return text[:12] + "…"
    return text if len(text) <= 60 else text[:57] + "…"


def protocol_differences(
    a: dict[str, Any], b: dict[str, Any], metric_groups: Iterable[str], names: tuple[str, str] = ("base", "new")
) -> list[str]:
    """One line per setting that differs, e.g. ``dataset.manifest_hash: 4434b359… (base) vs 9f8e… (new)``."""
    groups = list(metric_groups)
    pa, pb = protocol(a, groups), protocol(b, groups)
    keys = list(pa) + [k for k in pb if k not in pa]
    return [
        f"{key}: {_short(pa.get(key))} ({names[0]}) vs {_short(pb.get(key))} ({names[1]})"
        for key in keys
        if pa.get(key) != pb.get(key)
    ]


def context_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [
        f"{key}: {_short(_get(a, key))} (base) vs {_short(_get(b, key))} (new)"
        for key in CONTEXT_FIELDS
        if _get(a, key) != _get(b, key)
    ]


@dataclass
class MetricDiff:
    """One metric's paired comparison; values are on the metric's own scale (0-1)."""

    metric: str
    base: float | None
    new: float | None
    diff: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_adjusted: float | None
    n: int
    status: str


@dataclass
class Comparison:
    base: RunData
    new: RunData
    metrics: list[MetricDiff] = field(default_factory=list)
    incomparable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shared: int = 0
    clusters: int = 0
    iterations: int = DEFAULT_ITERATIONS
    seed: int = 0
    level: float = DEFAULT_LEVEL
    min_effect: float = 0.0

    @property
    def regressions(self) -> list[MetricDiff]:
        return [m for m in self.metrics if m.status == "regression"]

    def exit_code(self, fail_on_regression: bool) -> int:
        """2 incomparable, 1 a significant regression (only with ``--fail-on-regression``), else 0."""
        if self.incomparable:
            return 2
        return 1 if fail_on_regression and self.regressions else 0


def bootstrap_p_value(samples: np.ndarray) -> float | None:
    """Two-sided p-value of "the difference is 0" from the bootstrap distribution of the difference.

    It inverts the percentile interval (p < 1 - level exactly when the interval excludes 0), with
    the usual +1 correction so a p-value is never reported as 0 from finitely many resamples.
    """
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return None
    tail = min(int((finite <= 0).sum()), int((finite >= 0).sum()))
    return min(1.0, 2 * (tail + 1) / (finite.size + 1))


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm-Bonferroni adjusted p-values over the metrics compared together.

    A gate that fails when *any* of eight metrics drops would, uncorrected, raise a false alarm far
    more often than 5% of the time; the adjustment bounds that family-wise rate. ``--metrics``
    narrows the family, which is how a team gains power on the metric it cares about.
    """
    defined = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    out: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(defined):
        running = max(running, min(1.0, (len(defined) - rank) * p))
        out[i] = running
    return out


def classify(diff: float | None, p_value: float | None, level: float, min_effect: float) -> str:
    """A drop is a regression when it is significant (Holm-adjusted) *and* larger than ``min_effect``."""
    if diff is None or p_value is None:
        return "undefined"
    if p_value >= 1 - level:
        return "not_significant"
    if diff < -min_effect:
        return "regression"
    if diff > min_effect:
        return "improvement"
    return "within_tolerance"


def paired_bootstrap(
    base: Sequence[dict[str, Any]],
    new: Sequence[dict[str, Any]],
    metric_ids: Sequence[str],
    clusters: Sequence[str],
    iterations: int = DEFAULT_ITERATIONS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
    min_effect: float = 0.0,
) -> list[MetricDiff]:
    """Per metric: new − base on the full set, and on ``iterations`` paired cluster resamples.

    ``base[i]`` and ``new[i]`` are the same sample; both runs get the same resample rows, so every
    resample is a like-for-like difference. Verdicts use p-values adjusted over ``metric_ids``.
    """
    if not (len(base) == len(new) == len(clusters)) or not base:
        raise ValueError("paired_bootstrap needs equally long, non-empty, aligned record lists")
    groups = scoring.resolve_metrics(metric_ids)
    metrics = [groups[registry.metric_group(m)] for m in metric_ids]
    draws = cluster_draws(clusters, iterations, seed)
    boot = np.empty((len(metric_ids), len(draws)))
    # One weight block serves every metric and both runs: the resamples are shared by design.
    for start in range(0, len(draws), WEIGHT_BLOCK):
        weights = draw_weights(draws[start : start + WEIGHT_BLOCK], len(base))
        for k, (metric_id, metric) in enumerate(zip(metric_ids, metrics)):
            boot[k, start : start + WEIGHT_BLOCK] = (
                metric.aggregate_many(metric_id, new, weights) - metric.aggregate_many(metric_id, base, weights)
            )
    out = []
    for k, (metric_id, metric) in enumerate(zip(metric_ids, metrics)):
        b_full, n_full = metric.aggregate(metric_id, base), metric.aggregate(metric_id, new)
        diff = None if b_full is None or n_full is None else n_full - b_full
        low, high = percentile_ci(boot[k], level)
        p_value = bootstrap_p_value(boot[k]) if diff is not None else None
        n = sum(1 for rb, rn in zip(base, new) if rb.get(metric_id) is not None and rn.get(metric_id) is not None)
        out.append(MetricDiff(metric_id, b_full, n_full, diff, low, high, p_value, None, n, "undefined"))
    for m, metric, p_adjusted in zip(out, metrics, holm([m.p_value for m in out])):
        # Classify the change in the metric's good direction: a rise of an error rate is a regression.
        towards_better = m.diff if m.diff is None or metric.higher_is_better(m.metric) else -m.diff
        m.p_adjusted, m.status = p_adjusted, classify(towards_better, p_adjusted, level, min_effect)
    return out


def _select_metrics(base: RunData, new: RunData, wanted: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Metrics to compare (in base order) and notes about those only one run has."""
    in_base, in_new = list(base.results["metrics"]), set(new.results["metrics"])
    notes = [f"{m}: only in base, not compared" for m in in_base if m not in in_new and not wanted]
    notes += [f"{m}: only in new, not compared" for m in new.results["metrics"] if m not in in_base and not wanted]
    if not wanted:
        return [m for m in in_base if m in in_new], notes
    for metric_id in wanted:
        registry.metric_group(metric_id)  # an unknown id is a usage error listing the known ones
        for run, name in ((base, "base"), (new, "new")):
            if metric_id not in run.results["metrics"]:
                raise UsageError(f"--metrics: {metric_id!r} is not in the {name} run ({run.path})")
    return list(wanted), notes


def _aligned(base: RunData, new: RunData, metric_ids: Sequence[str]) -> tuple[list, list, list[str], list[str]]:
    """Records of the shared sample ids in base order, their clusters, and notes about the pairing."""
    new_by_id = {r["id"]: r for r in new.records}
    pairs = [(r, new_by_id[r["id"]]) for r in base.records if r["id"] in new_by_id]
    notes = []
    only_base, only_new = len(base.records) - len(pairs), len(new.records) - len(pairs)
    if only_base or only_new:
        notes.append(f"{only_base} samples only in base and {only_new} only in new are left out of the pairing")
    for metric_id in metric_ids:
        for run, name in ((base, "base"), (new, "new")):
            missing = next((r["id"] for r in run.records if metric_id not in r), None)
            if missing is not None:
                raise UsageError(f"{run.path.parent / SCORES}: sample {missing!r} has no {metric_id!r} ({name} run)")
    b, n = [p[0] for p in pairs], [p[1] for p in pairs]
    if all("cluster" in r for r in b + n):
        clusters = [r["cluster"] for r in b]
        if clusters != [r["cluster"] for r in n]:
            raise UsageError("the runs assign different patient/study clusters to the same sample ids")
    else:
        clusters = [r["id"] for r in b]
        notes.append("no cluster ids in scores.jsonl (written by an older radbench): resampling samples, not patients")
    return b, n, clusters, notes


def compare(
    base: RunData,
    new: RunData,
    metrics: Sequence[str] | None = None,
    min_effect: float = 0.0,
    iterations: int = DEFAULT_ITERATIONS,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> Comparison:
    """Compare two loaded runs; an incomparable pair comes back with ``incomparable`` set, unscored."""
    if min_effect < 0:
        raise UsageError(f"--min-effect must be >= 0, got {min_effect}")
    if iterations < 100:
        raise UsageError(f"--iterations must be >= 100 for a usable 95% interval, got {iterations}")
    out = Comparison(base, new, iterations=iterations, seed=seed, level=level, min_effect=min_effect)
    metric_ids, out.notes = _select_metrics(base, new, metrics)
    groups = {registry.metric_group(m) for m in metric_ids}
    out.incomparable = protocol_differences(base.results, new.results, groups)
    out.notes += context_differences(base.results, new.results)
    if out.incomparable:
        return out
    if not metric_ids:
        raise UsageError("the runs share no metric; nothing to compare")
    b, n, clusters, notes = _aligned(base, new, metric_ids)
    out.notes += notes
    if not b:
        out.incomparable = ["the runs share no sample id"]
        return out
    out.shared, out.clusters = len(b), len(set(clusters))
    out.metrics = paired_bootstrap(b, n, metric_ids, clusters, iterations, seed, level, min_effect)
    return out


def compare_paths(base: Path, new: Path, **kwargs: Any) -> Comparison:
    return compare(load_run(base), load_run(new), **kwargs)


# --- rendering -------------------------------------------------------------------------------------

VERDICT = {
    "regression": "▼ regression",
    "improvement": "▲ improvement",
    "within_tolerance": "≈ significant, within --min-effect",
    "not_significant": "no significant change",
    "undefined": "undefined",
}


def fmt_value(value: float | None, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def fmt_p(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def md_escape(text: Any) -> str:
    """Untrusted text for a markdown table cell: no HTML, links, emphasis or column breaks."""
    out = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    for ch in "\\`*_[]|#!~":
        out = out.replace(ch, "\\" + ch)
    return out.replace("\n", " ")


def _describe(run: RunData) -> str:
    model = run.results["model"]
    fingerprint = md_escape(_short(model["fingerprint"]))
    name, version = md_escape(model["name"]), md_escape(model["version"])
    return f"{name} v{version} (weights {fingerprint}) · {md_escape(run.directory)}"


def to_markdown(c: Comparison) -> str:
    """A summary for a pull-request comment or ``$GITHUB_STEP_SUMMARY``."""
    r = c.base.results
    lines = []
    if c.incomparable:
        lines += ["### radbench compare: ⛔ the runs are not comparable", ""]
        lines += [f"- {md_escape(d)}" for d in c.incomparable]
        lines += ["", "Re-run NEW with the task version, dataset, prompts, decoding settings and metric "
                  "configuration of BASE (or compare it with a matching base run)."]
    else:
        headline = (f"▼ {len(c.regressions)} significant regression(s)" if c.regressions
                    else "✅ no significant regression")
        demo = " (DEMO DATA, NOT A BENCHMARK)" if r["dataset"]["is_demo"] else ""
        lines += [f"### radbench compare: {headline}", ""]
        lines += [
            f"- **Base:** {_describe(c.base)}",
            f"- **New:** {_describe(c.new)}",
            f"- **Task** {md_escape(r['task']['name'])} v{md_escape(r['task']['version'])} on "
            f"{md_escape(r['dataset']['name'])}{demo}, manifest `{r['dataset']['manifest_hash'][:12]}`",
            f"- Paired bootstrap over {c.shared} shared samples in {c.clusters} clusters, "
            f"{c.iterations} resamples, seed {c.seed}; regression = a drop larger than {c.min_effect:g} with "
            f"Holm-adjusted p < {1 - c.level:.2f} over the {len(c.metrics)} metrics compared",
            "",
            f"| metric | base | new | Δ new − base | {c.level:.0%} CI of Δ | p | p (Holm) | verdict |",
            "|---|---:|---:|---:|---|---:|---:|---|",
        ]
        for m in c.metrics:
            lines.append(
                f"| {md_escape(m.metric)} | {fmt_value(m.base)} | {fmt_value(m.new)} | {fmt_value(m.diff, True)} | "
                f"[{fmt_value(m.ci_low, True)}, {fmt_value(m.ci_high, True)}] | {fmt_p(m.p_value)} | "
                f"{fmt_p(m.p_adjusted)} | {VERDICT[m.status]} |"
            )
    if c.notes:
        lines += ["", "Notes:"] + [f"- {md_escape(n)}" for n in c.notes]
    return "\n".join(lines) + "\n"


def to_json(c: Comparison) -> dict[str, Any]:
    """The comparison as data (``radbench/schemas/compare.schema.json``)."""
    def side(run: RunData) -> dict[str, Any]:
        return {"path": str(run.directory), "model": run.results["model"]}

    return {
        "schema_version": results.SCHEMA_VERSION,
        "kind": "radbench-compare",
        "base": side(c.base),
        "new": side(c.new),
        "comparable": not c.incomparable,
        "incomparable": c.incomparable,
        "notes": c.notes,
        "shared_samples": c.shared,
        "clusters": c.clusters,
        "bootstrap": {"iterations": c.iterations, "seed": c.seed, "level": c.level, "method": "paired percentile"},
        "min_effect": c.min_effect,
        "regression": bool(c.regressions),
        "metrics": [asdict(m) for m in c.metrics],
    }


def write_json(path: Path, c: Comparison) -> None:
    data = to_json(c)
    schemas.validate(data, "compare")
    atomic_write_json(path, data)


def print_table(c: Comparison) -> None:
    """The terminal view: the same facts as the markdown, as a rich table."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console(highlight=False, width=max(Console().width, 110))
    if c.incomparable:
        console.print(Text("radbench compare: the runs are not comparable", style="bold red"))
        for d in c.incomparable:
            console.print(Text(f"  {d}"))
    else:
        table = Table(title=f"{c.new.directory} vs {c.base.directory} "
                            f"({c.shared} paired samples, {c.clusters} clusters)")
        for col in ("metric", "base", "new", "Δ", f"{c.level:.0%} CI of Δ", "p", "p (Holm)", "verdict"):
            table.add_column(col, justify="left" if col in ("metric", "verdict") else "right")
        styles = {"regression": "bold red", "improvement": "green"}
        for m in c.metrics:
            table.add_row(
                Text(m.metric), fmt_value(m.base), fmt_value(m.new), fmt_value(m.diff, True),
                f"[{fmt_value(m.ci_low, True)}, {fmt_value(m.ci_high, True)}]", fmt_p(m.p_value), fmt_p(m.p_adjusted),
                Text(VERDICT[m.status], style=styles.get(m.status, "")),
            )
        console.print(table)
    for note in c.notes:
        console.print(Text(f"note: {note}", style="dim"))
