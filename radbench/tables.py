"""Console tables that fit the terminal, with one legend line saying how to read them.

Every table is measured against the console's width (``COLUMNS``, or the terminal's): a wide
layout (one row per run, one column per metric) is used only when it fits unwrapped; otherwise
the same numbers are printed in long format (one row per run and metric), which fits an
80-column terminal. A sweep is always printed in long format (one row per checkpoint and metric),
since its width would otherwise grow with the number of metrics. Below each table: the legend,
then every warning the results carry (too few clusters for the interval to be trusted).
"""

from __future__ import annotations

import math
from typing import IO, Any, Iterable, Sequence

from rich.console import Console, RenderableType
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


from radbench import labels

# The verdict of a paired comparison as a console mark; shared by the sweep table.
MARK = {"regression": "▼", "improvement": "▲", "within_tolerance": "≈"}
STYLES = {"regression": "bold red", "improvement": "green"}


def console(file: IO[str] | None = None, width: int | None = None) -> Console:
    """A console as wide as the terminal (``COLUMNS`` when set); ``width`` fixes it (tests)."""
    return Console(file=file, width=width, highlight=False)


def fmt(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def value_ci(m: dict[str, Any] | None, digits: int = 3) -> str:
    """``0.627 [0.500, 0.732]``; ``-`` for an undefined metric, no interval when none was computed."""
    if m is None or m.get("value") is None:
        return "-"
    if m.get("ci_low") is None:
        return fmt(m["value"], digits)
    return f"{fmt(m['value'], digits)} [{fmt(m['ci_low'], digits)}, {fmt(m['ci_high'], digits)}]"


def fits(out: Console, renderable: RenderableType) -> bool:
    """True when ``renderable`` needs no wrapping at the console's width.

    Measured against an unbounded width: rich measures a table within the width it is given, so
    measuring at the console's own width would always report a fit.
    """
    return Measurement.get(out, out.options.update_width(1 << 16), renderable).maximum <= out.width


def lower_is_better(res: dict[str, Any]) -> set[str]:
    return {m for cfg in res.get("metric_configs", {}).values() for m in cfg.get("lower_is_better", [])}


def _label(metric_id: str, lower: set[str], res: dict[str, Any] | None = None) -> str:
    """The metric as a reader should see it: its source where it has one ("UMLS F1 · HPO index"), ↓ when
    lower is better."""
    name = metric_label(metric_id, res.get("metric_configs", {})) if res else metric_id
    return f"{name} ↓" if metric_id in lower else name


def metric_label(metric_id: str, metric_configs: dict[str, Any]) -> str:
    return labels.metric_labels([metric_id], metric_configs)[metric_id]


def metric_source(configs: dict[str, dict[str, Any]]) -> str:
    """Each metric group's implementation in a few words (the full configuration is in results.json)."""
    parts = []
    for group, cfg in configs.items():
        detail = next((str(cfg[k]) for k in ("label", "implementation", "convention", "backend") if cfg.get(k)), "")
        parts.append(f"{group}={detail}" if detail else group)
    return ", ".join(parts)


def legend(results: Sequence[dict[str, Any]]) -> str:
    """The one line under a table: how to read ``value [95% CI]``, the cluster unit, the metric sources."""
    units = {r.get("bootstrap", {}).get("cluster", "patient/study") for r in results}
    over = "patient clusters" if units == {"patient/study"} else (
        "samples (no patient or study ids)" if units == {"sample"} else "patient clusters where known, else samples")
    configs: dict[str, dict[str, Any]] = {}
    for r in results:
        configs.update(r.get("metric_configs", {}))
    lower = sorted({m for r in results for m in lower_is_better(r)})
    line = f"value [95% CI] = point estimate with 95% bootstrap CI over {over}"
    if lower:
        line += "; ↓ = lower is better"
    if configs:
        line += f"; metric source: {metric_source(configs)}"
        sourced = labels.describe_sources(configs)
        if sourced:
            line += f"; {sourced}"
    bert = configs.get("bertscore")
    if bert and not bert.get("rescale_with_baseline"):
        # Unrescaled BERTScore of any two same-style sentences is high: a constant-answer baseline gets ~0.8.
        line += "; BERTScore is not rescaled: unrelated reports of the same style already score about 0.8"
    return line


def print_footer(out: Console, results: Sequence[dict[str, Any]]) -> None:
    """Legend, then one ``warning:`` line per warning any of ``results`` carries."""
    out.print(Text(legend(results), style="dim"))
    for warning in dict.fromkeys(w for r in results for w in r.get("warnings", [])):
        out.print(Text(f"warning: {warning}", style="yellow"))


def results_table(rows: Sequence[tuple[str, str, dict[str, Any]]], title: str, columns: Iterable[str],
                  out: Console) -> Table:
    """Runs as rows and metrics as columns when that fits ``out``; else one row per run and metric."""
    metric_ids = [m for m in columns if any(m in r[2]["metrics"] for r in rows)]
    lower = {m for _, _, res in rows for m in lower_is_better(res)}
    wide = Table(title=title or None)
    # Column headers keep the short ids (a sourced label would be cropped); the legend names the sources.
    for col in ("model", "task", "n", "failed", *(_label(m, lower) for m in metric_ids)):
        wide.add_column(col, justify="left" if col in ("model", "task") else "right")
    for model, task, res in rows:
        wide.add_row(model, task, str(res["n_samples"]), str(res["failures"]["count"]),
                     *(value_ci(res["metrics"].get(m)) for m in metric_ids))
    if fits(out, wide):
        return wide
    long = Table(title=title or None)
    for col in ("model", "task", "metric", "value [95% CI]", "n"):
        long.add_column(col, justify="right" if col in ("n",) else "left", no_wrap=col == "value [95% CI]")
    for model, task, res in rows:
        for i, metric_id in enumerate(m for m in metric_ids if m in res["metrics"]):
            first = i == 0
            long.add_row(model if first else "", task if first else "", _label(metric_id, lower, res),
                         value_ci(res["metrics"][metric_id]), str(res["metrics"][metric_id]["n"]),
                         end_section=False)
        long.add_section()
    return long


def print_results(rows: Sequence[tuple[str, str, dict[str, Any]]], title: str, columns: Iterable[str],
                  out: Console | None = None, footer: bool = True) -> None:
    out = out or console()
    out.print(Text(title, style="italic"), soft_wrap=True)  # a long run path stays whole and copyable
    out.print(results_table(rows, "", columns, out))
    if footer:
        print_footer(out, [r[2] for r in rows])


def print_metric_list(res: dict[str, Any], title: str, out: Console | None = None) -> None:
    """Every metric of one run, one per line: value, 95% CI and how many samples defined it."""
    out = out or console()
    lower = lower_is_better(res)
    table = Table(title=f"{title} (n={res['n_samples']}, failed={res['failures']['count']})")
    for col in ("metric", "value", "95% CI", "n"):
        table.add_column(col, justify="left" if col == "metric" else "right", no_wrap=col != "metric")
    for metric_id, m in res["metrics"].items():
        defined = m["value"] is not None
        table.add_row(_label(metric_id, lower, res), fmt(m["value"], 4) if defined else "-",
                      f"[{fmt(m['ci_low'], 4)}, {fmt(m['ci_high'], 4)}]" if defined and m["ci_low"] is not None else "-",
                      str(m["n"]))
    out.print(table)
    print_footer(out, [res])


VERDICT_SHORT = {"regression": "▼ regression", "improvement": "▲ improvement", "within_tolerance": "≈ within tolerance",
                 "not_significant": "not significant", "undefined": "undefined"}


def sweep_table(trend: dict[str, Any], lower: set[str] | frozenset[str] = frozenset()) -> Table:
    """Long format: one row per checkpoint and metric, with the change against the baseline.

    Names and verdicts wrap rather than being cut, and the numbers never wrap, so an 80-column
    terminal still shows every digit.
    """
    table = Table(title=f"radbench sweep: {trend['model']} on {trend['task']['name']} "
                        f"({trend['dataset']['name']}); changes vs {trend['baseline']}")
    table.add_column("checkpoint", overflow="fold")
    table.add_column("step", justify="right")
    table.add_column("metric", overflow="fold")
    table.add_column("value [95% CI]", no_wrap=True)
    table.add_column("Δ (p Holm)", justify="right")
    table.add_column("verdict", overflow="fold")
    for row in trend["checkpoints"]:
        for i, metric_id in enumerate(trend["metrics"]):
            m = row["metrics"][metric_id]
            if m["status"] == "baseline":
                verdict, change = Text("baseline", style="dim"), ""
            else:
                verdict = Text(VERDICT_SHORT.get(m["status"], m["status"]), style=STYLES.get(m["status"], "dim"))
                change = f"{fmt(m['diff'], signed=True)} ({fmt(m['p_adjusted'])})"
            first = i == 0
            table.add_row(Text(row["name"]) if first else "", "" if row["step"] is None or not first else str(row["step"]),
                          _label(metric_id, lower), value_ci(m), change, verdict)
        table.add_section()
    return table


def print_sweep(trend: dict[str, Any], runs: Sequence[dict[str, Any]] = (), out: Console | None = None) -> None:
    out = out or console()
    out.print(sweep_table(trend, {m for r in runs for m in lower_is_better(r)}))
    print_footer(out, runs)
