"""``radbench compare``: is NEW worse than BASE by more than sampling noise explains?

Two runs are only compared when they measured the same thing: same task and version, same dataset
manifest, same prompts and exemplars, same decoding settings and the same configuration of every
compared metric. :func:`radbench.results.protocol_differences` names the first field that differs (the leaderboard
uses the same check), because "a different number" is useless without "because the prompt changed".

Comparable runs get a *paired* bootstrap over the sample ids both scored: each resample draws the
same ids (whole patients or studies when ``scores.jsonl`` has cluster ids) from both runs and
re-applies each metric's own aggregate, so the interval is of the difference in the reported number
(corpus BLEU included), not of a per-sample proxy. Pairing removes the between-sample variance that
both runs share, which is what makes a 3-point drop on 500 samples detectable at all.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radbench import labels, registry, results, scoring
from radbench.errors import UsageError
from radbench import schemas
from radbench.results import RunData, context_differences, load_run, protocol_differences, short
from radbench.stats import (
    DEFAULT_ITERATIONS,
    DEFAULT_LEVEL,
    bootstrap_p_value,
    classify,
    cluster_draws,
    draw_weights,
    few_clusters_warning,
    holm,
    percentile_ci,
)
from radbench.store import SCORES, atomic_write_json

WEIGHT_BLOCK = 200  # resamples per weight matrix: bounds memory at 200 x n floats


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
    # The interval the verdict uses: the percentile interval at the level the Holm step applies to
    # this metric (1 - alpha * p / p_adjusted), so it excludes 0 exactly when p_adjusted < alpha.
    # ``ci_low``/``ci_high`` above are the unadjusted (per-metric) interval.
    adjusted_ci_low: float | None = None
    adjusted_ci_high: float | None = None
    adjusted_level: float | None = None
    lower_is_better: bool = False


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
    # How tables show each compared metric ("UMLS P · HPO index"), and the sources behind them in one line.
    labels: dict[str, str] = field(default_factory=dict)
    sources: str = ""

    @property
    def regressions(self) -> list[MetricDiff]:
        return [m for m in self.metrics if m.status == "regression"]

    def exit_code(self, fail_on_regression: bool) -> int:
        """2 incomparable, 1 a significant regression (only with ``--fail-on-regression``), else 0."""
        if self.incomparable:
            return 2
        return 1 if fail_on_regression and self.regressions else 0


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
        m.lower_is_better = not metric.higher_is_better(m.metric)
    for k, m in enumerate(out):
        if m.p_value is not None and m.p_adjusted:
            m.adjusted_level = 1 - (1 - level) * m.p_value / m.p_adjusted
            m.adjusted_ci_low, m.adjusted_ci_high = _holm_interval(boot[k], m.p_value / m.p_adjusted, 1 - level)
    return out


def _holm_interval(samples: np.ndarray, scale: float, alpha: float) -> tuple[float | None, float | None]:
    """The order-statistic interval that excludes 0 exactly when the Holm-adjusted p is below ``alpha``.

    ``bootstrap_p_value`` is ``2 (t + 1) / (N + 1)`` with ``t`` the resamples on the far side of 0,
    and the adjusted p is that divided by ``scale`` (<= 1). So the verdict is significant exactly
    when ``t <= j`` for the largest whole ``j < alpha * scale * (N + 1) / 2 - 1``, which is when
    ``[s_j, s_(N-1-j)]`` of the sorted resamples excludes 0: the printed interval and the verdict
    cannot disagree, whatever the number of resamples. ``None`` when ``j < 0`` (too few
    resamples for an interval this wide; nothing can be significant then).
    """
    finite = np.sort(samples[np.isfinite(samples)])
    bound = alpha * scale * (finite.size + 1) / 2 - 1
    j = math.ceil(bound) - 1
    if finite.size == 0 or j < 0 or j >= finite.size - 1 - j:
        return None, None
    return float(finite[j]), float(finite[finite.size - 1 - j])


def disagreements(c: "Comparison") -> list[str]:
    """Notes for every metric whose intervals could be read against its verdict.

    The verdict is decided by the Holm-adjusted p-value. An unadjusted interval that excludes 0
    beside "no significant change" is explained; an adjusted interval that disagrees with the
    verdict cannot occur (see :func:`_holm_interval`); one that cannot be formed is named.
    """
    notes = []
    alpha = 1 - c.level
    for m in c.metrics:
        if m.p_adjusted is None or m.ci_low is None:
            continue
        significant = m.p_adjusted < alpha
        if _excludes_zero(m.ci_low, m.ci_high) and not significant:
            notes.append(f"{m.metric}: the unadjusted {c.level:.0%} CI [{fmt_value(m.ci_low, True)}, "
                         f"{fmt_value(m.ci_high, True)}] excludes 0, but adjusted for the {len(c.metrics)} metrics "
                         f"compared together (Holm) p={fmt_p(m.p_adjusted)}: not significant; compare it alone "
                         "(--metrics) to test it at full power")
        if m.adjusted_ci_low is None and m.diff is not None:
            notes.append(f"{m.metric}: {c.iterations} resamples are too few for a Holm-adjusted interval over "
                         f"{len(c.metrics)} metrics (raise --iterations); nothing can be significant at this resolution")
    return notes


def _excludes_zero(low: float | None, high: float | None) -> bool:
    return low is not None and high is not None and (low > 0 or high < 0)


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
    configs = base.results["metric_configs"]
    out.labels, out.sources = labels.metric_labels(metric_ids, configs), labels.describe_sources(configs, groups)
    if not metric_ids:
        raise UsageError("the runs share no metric; nothing to compare")
    b, n, clusters, notes = _aligned(base, new, metric_ids)
    out.notes += notes
    if not b:
        out.incomparable = ["the runs share no sample id"]
        return out
    out.shared, out.clusters = len(b), len(set(clusters))
    out.metrics = paired_bootstrap(b, n, metric_ids, clusters, iterations, seed, level, min_effect)
    few = few_clusters_warning(out.clusters, "paired")
    out.notes += ([f"warning: {few}"] if few else []) + disagreements(out)
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
# For a lower-is-better metric the arrow still shows which way the number moved: a rising error
# rate is "▲ regression", a falling one "▼ improvement".
VERDICT_LOWER = {**VERDICT, "regression": "▲ regression", "improvement": "▼ improvement"}


def verdict(m: MetricDiff) -> str:
    return (VERDICT_LOWER if m.lower_is_better else VERDICT)[m.status]


def metric_label(m: MetricDiff, names: dict[str, str] | None = None) -> str:
    """The metric as tables show it: its source label where it has one, ``↓`` when lower is better."""
    name = (names or {}).get(m.metric, m.metric)
    return f"{name} ↓" if m.lower_is_better else name


def interval(low: float | None, high: float | None) -> str:
    return f"[{fmt_value(low, True)}, {fmt_value(high, True)}]"


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
    fingerprint = md_escape(short(model["fingerprint"]))
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
            f"Holm-adjusted p < {1 - c.level:.2f} over the {len(c.metrics)} metrics compared; the verdict's "
            "interval is Holm-adjusted too (it excludes 0 exactly when the verdict is significant); ↓ = lower is "
            "better, and the verdict follows each metric's direction",
            *([f"- Scored with {md_escape(c.sources)}"] if c.sources else []),
            "",
            "| metric | base | new | Δ new − base | CI of Δ (Holm-adjusted) | p (Holm) | verdict | "
            f"unadjusted {c.level:.0%} CI | unadjusted p |",
            "|---|---:|---:|---:|---|---:|---|---|---:|",
        ]
        for m in c.metrics:
            lines.append(
                f"| {md_escape(metric_label(m, c.labels))} | {fmt_value(m.base)} | {fmt_value(m.new)} | "
                f"{fmt_value(m.diff, True)} | {interval(m.adjusted_ci_low, m.adjusted_ci_high)} | "
                f"{fmt_p(m.p_adjusted)} | {verdict(m)} | {interval(m.ci_low, m.ci_high)} | {fmt_p(m.p_value)} |"
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
        "metric_labels": c.labels,
    }


def write_json(path: Path, c: Comparison) -> None:
    data = to_json(c)
    schemas.validate(data, "compare")
    atomic_write_json(path, data)


def _long_table(c: Comparison) -> Any:
    """The same facts for a narrow terminal: one block of rows per metric, one quantity per row."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{c.new.directory} vs {c.base.directory} ({c.shared} paired samples, {c.clusters} clusters)")
    for col in ("metric", "", "value"):
        table.add_column(col, overflow="fold")
    styles = {"regression": "bold red", "improvement": "green"}
    for m in c.metrics:
        rows = [("base → new", f"{fmt_value(m.base)} → {fmt_value(m.new)}"),
                ("Δ [CI, Holm-adj.]", f"{fmt_value(m.diff, True)} {interval(m.adjusted_ci_low, m.adjusted_ci_high)}"),
                ("p (Holm)", fmt_p(m.p_adjusted)),
                ("verdict", Text(verdict(m), style=styles.get(m.status, ""))),
                (f"unadj. {c.level:.0%} CI, p", f"{interval(m.ci_low, m.ci_high)}, {fmt_p(m.p_value)}")]
        for i, (what, value) in enumerate(rows):
            table.add_row(metric_label(m) if i == 0 else "", what, value)
        table.add_section()
    return table


def print_table(c: Comparison) -> None:
    """The terminal view: the same facts as the markdown, as a rich table."""
    from rich.table import Table
    from rich.text import Text

    from radbench.tables import console as make_console
    from radbench.tables import fits

    console = make_console()
    if c.incomparable:
        console.print(Text("radbench compare: the runs are not comparable", style="bold red"))
        for d in c.incomparable:
            console.print(Text(f"  {d}"), soft_wrap=True)  # one setting per line, whole
    else:
        table = Table(title=f"{c.new.directory} vs {c.base.directory} "
                            f"({c.shared} paired samples, {c.clusters} clusters)")
        columns = ("metric", "base", "new", "Δ", "CI of Δ (Holm-adj.)", "p (Holm)", "verdict",
                   f"unadj. {c.level:.0%} CI", "unadj. p")
        for col in columns:
            table.add_column(col, justify="left" if col in ("metric", "verdict") else "right",
                             overflow="fold")
        styles = {"regression": "bold red", "improvement": "green"}
        for m in c.metrics:
            table.add_row(
                Text(metric_label(m)), fmt_value(m.base), fmt_value(m.new), fmt_value(m.diff, True),
                interval(m.adjusted_ci_low, m.adjusted_ci_high), fmt_p(m.p_adjusted),
                Text(verdict(m), style=styles.get(m.status, "")),
                interval(m.ci_low, m.ci_high), fmt_p(m.p_value),
            )
        console.print(table if fits(console, table) else _long_table(c))
        console.print(Text(f"the verdict uses the Holm-adjusted p over the {len(c.metrics)} metrics compared and "
                           "its interval; unadj. = this metric alone; ↓ = lower is better", style="dim"))
        if c.sources:
            console.print(Text(f"scored with {c.sources}", style="dim"))
    for note in c.notes:
        console.print(Text(f"note: {note}", style="dim"))
