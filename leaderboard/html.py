"""``radbench leaderboard html``: one self-contained static page from ``leaderboard.json``.

The page is rendered here, in Python, with every string from the results passed through
:func:`html.escape`, so it is complete without JavaScript and no result text ever becomes markup (a
model named ``<script>alert(1)</script>`` is shown as those characters). Metric panels are chosen
with radio buttons and CSS, so that works without script too; the small inline script only adds
sorting and filtering. A Content-Security-Policy that allows exactly the inline script and
style (by hash) and nothing else means the page makes no network request and, should an escape ever
be missed, an injected script still would not run.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
from html import escape
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote, unquote

from radbench import labels
from radbench.leaderboard.build import load
from radbench.store import atomic_write_text

STYLE = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #2f6fb3;
  --bar: #8fb3dc; --whisker: #1d2330; --warn: #9a3b00; --bg-alt: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 12px 20px; }
header h1 { font-size: 1.5em; margin: 8px 0 4px; overflow-wrap: anywhere; }
.muted, small { color: var(--muted); }
.filters { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; margin-top: 8px; }
.filters select { font: inherit; padding: 2px 6px; max-width: 100%; }
section.group { border-top: 2px solid var(--line); margin-top: 18px; padding-top: 6px; }
section.group h2 { font-size: 1.2em; margin: 6px 0; overflow-wrap: anywhere; }
.badge { display: inline-block; font-size: 0.75em; font-weight: 600; padding: 1px 6px; border-radius: 8px;
  border: 1px solid currentColor; vertical-align: middle; margin-left: 6px; white-space: nowrap; }
.badge.demo, .badge.yes { color: var(--warn); }
.badge.no { color: #2d6a2d; }
.badge.unknown { color: var(--muted); }
.split { color: var(--warn); }
.scroll { overflow-x: auto; }
table.board { border-collapse: collapse; width: 100%; margin: 8px 0; }
table.board th, table.board td { border-bottom: 1px solid var(--line); padding: 4px 6px; text-align: right;
  vertical-align: top; }
table.board td { white-space: nowrap; }
table.board th { font-weight: 600; vertical-align: bottom; }
table.board th small { display: block; font-weight: normal; }
table.board th.text, table.board td.text { text-align: left; white-space: normal; }
table.board th.primary, table.board td.primary { background: #eaf1fa; }
table.board tbody tr:nth-child(even) { background: var(--bg-alt); }
table.board th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer;
  color: var(--ink); text-align: inherit; overflow-wrap: anywhere; }
table.board th[aria-sort="ascending"] button::after { content: " \\25B2"; }
table.board th[aria-sort="descending"] button::after { content: " \\25BC"; }
td.model { min-width: 9em; max-width: 22em; }
td.model summary { cursor: pointer; font-weight: 600; overflow-wrap: anywhere; }
td small { display: block; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 6px 0; font-size: 0.9em; }
dl.prov dt { color: var(--muted); }
dl.prov dd { margin: 0; overflow-wrap: anywhere; min-width: 0; }
pre { background: var(--bg-alt); padding: 6px; overflow-x: auto; font-size: 0.85em; }
.chooser { margin: 8px 0 0; }
.chooser > input { position: absolute; opacity: 0; width: 1px; height: 1px; }
.chooser > label { display: inline-block; padding: 3px 10px; margin: 0 4px 4px 0; border: 1px solid var(--line);
  border-radius: 12px; cursor: pointer; }
.chooser > input:checked + label { background: var(--accent); border-color: var(--accent); color: #fff; }
.chooser > input:focus-visible + label { outline: 2px solid var(--accent); outline-offset: 2px; }
.chooser > div.panel { display: none; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 24px; }
figure.chart { margin: 0; max-width: 100%; }
figure.chart figcaption { font-weight: 600; overflow-wrap: anywhere; }
figure.chart svg { max-width: 100%; height: auto; }
svg .b { fill: var(--bar); }
svg .w { stroke: var(--whisker); stroke-width: 1.5; }
svg .axis { stroke: var(--line); }
svg text { font-size: 11px; fill: var(--ink); }
svg text.t { fill: var(--muted); }
[hidden] { display: none !important; }
"""

SCRIPT = """
"use strict";
(function () {
  function key(row, index, type) {
    var v = row.cells[index].getAttribute("data-v");
    if (v === null || v === "") { return null; }
    return type === "num" ? parseFloat(v) : v.toLowerCase();
  }
  function sortTable(table, index, type, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, index, type), y = key(b, index, type);
      if (x === null || y === null) { return (x === null) - (y === null); }
      var c = type === "num" ? x - y : (x < y ? -1 : (x > y ? 1 : 0));
      return dir === "ascending" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  }
  document.querySelectorAll("table.board th[data-type] button").forEach(function (button) {
    button.addEventListener("click", function () {
      var th = button.parentNode, table = th.closest("table"), current = th.getAttribute("aria-sort");
      var dir = current === "ascending" ? "descending" : current === "descending" ? "ascending" : th.dataset.first;
      table.querySelectorAll("th[aria-sort]").forEach(function (other) { other.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", dir);
      sortTable(table, th.cellIndex, th.dataset.type, dir);
    });
  });
  var task = document.getElementById("filter-task"), dataset = document.getElementById("filter-dataset");
  var status = document.getElementById("filter-status");
  function applyFilters() {
    var groups = document.querySelectorAll("section.group"), shown = 0;
    groups.forEach(function (g) {
      var ok = (!task.value || g.dataset.task === task.value) &&
        (!dataset.value || g.dataset.dataset === dataset.value);
      g.hidden = !ok;
      shown += ok ? 1 : 0;
    });
    status.textContent = shown + " of " + groups.length + (groups.length === 1 ? " group" : " groups") + " shown";
  }
  task.addEventListener("change", applyFilters);
  dataset.addEventListener("change", applyFilters);
  applyFilters();
})();
"""

LABEL_WIDTH, PLOT_WIDTH, VALUE_WIDTH, ROW_HEIGHT, AXIS_HEIGHT = 160, 280, 50, 22, 22
# Metric columns beside the primary one in one panel: with the rank, model, n and primary columns,
# four fit in 760 px (an 800 px window), so no panel needs a horizontal scrollbar.
PANEL_COLUMNS = 4
LOWER = "\u2193"  # the mark of a lower-is-better metric (error and failure rates)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _e(value: Any) -> str:
    """Every string that reaches the page goes through here (text and attribute values alike)."""
    return escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _short(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plural(count: int, one: str, many: str = "") -> str:
    """``1 entry``, ``2 entries``: the page never says "1 entries"."""
    return f"{count} {one}" if count == 1 else f"{count} {many or one + 's'}"


def _label(metric_id: str, lower: bool) -> str:
    """A metric's name, breakable after each underscore (long ids wrap in a narrow column), ↓ if lower is better."""
    name = "_<wbr>".join(_e(part) for part in metric_id.split("_"))
    return name + (f' <span title="lower is better">{LOWER}</span>' if lower else "")


def _labels(group: dict[str, Any]) -> dict[str, str]:
    """Each metric's display label ("UMLS P · HPO index"); a leaderboard built before labels existed gets
    them from its metric configurations, the same way."""
    return group.get("metric_labels") or labels.metric_labels(group["metrics"], group["metric_configs"])


def _source_note(label: str) -> str:
    """The source part of a label, as a small line under a column head ("" for a metric without one)."""
    _, sep, source = label.partition(labels.SEPARATOR)
    return f"<small>{_e(source)}</small>" if sep else ""


def _nice_max(value: float) -> float:
    """An axis end at or above ``value``: 1, 2, 2.5 or 5 times a power of ten (0.05, 0.2, 1...)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value - 1e-12)


def _axis(values: list[float]) -> tuple[float, float]:
    """The chart's axis: 0 to 1 when every value and interval end lies there, as for every built-in metric.

    A fixed axis keeps a bar's length its value: scaled to the largest entry, a BLEU-3 of 1e-13 would
    fill the chart. A metric outside [0, 1] (a plugin's latency in seconds) gets 0 to a round number
    above its largest value, extended below 0 when it has negative values.
    """
    if all(0.0 <= v <= 1.0 for v in values):
        return 0.0, 1.0
    low = min([0.0, *values])
    return (-_nice_max(-low) if low < 0 else 0.0), _nice_max(max([0.0, *values]))


def chart(metric_id: str, entries: list[dict[str, Any]], lower_is_better: bool = False, label: str = "") -> str:
    """A horizontal bar per entry, best first, with its 95% interval as a whisker; the full text on hover.

    ``label`` is the metric's display label when its numbers depend on a source ("UMLS P · HPO index").
    """
    rows = [e for e in entries if e["metrics"].get(metric_id, {}).get("value") is not None]
    sign = 1.0 if lower_is_better else -1.0
    rows.sort(key=lambda e: sign * e["metrics"][metric_id]["value"])
    values = [v for e in rows for k in ("value", "ci_low", "ci_high")
              if (v := e["metrics"][metric_id].get(k)) is not None and math.isfinite(v)]
    axis_low, axis_high = _axis(values)
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH
    height = AXIS_HEIGHT + ROW_HEIGHT * max(len(rows), 1)

    def x(value: float) -> float:
        return LABEL_WIDTH + PLOT_WIDTH * (max(axis_low, min(value, axis_high)) - axis_low) / (axis_high - axis_low)

    order = "lower is better" if lower_is_better else "higher is better"
    mark = f" {LOWER}" if lower_is_better else ""
    parts = [
        f'<figure class="chart"><figcaption>{_e(label or metric_id)}{mark} <small>({order}; bars: value; '
        f'whiskers: 95% CI)</small></figcaption><svg viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{_e(label or metric_id)} by model with 95% confidence '
        f'intervals, {order}">'
    ]
    for tick in sorted({axis_low, 0.0, (axis_low + axis_high) / 2, axis_high}):
        tx = x(tick)
        parts.append(f'<line class="axis" x1="{tx:.1f}" x2="{tx:.1f}" y1="0" y2="{height - AXIS_HEIGHT + 4}"/>'
                     f'<text class="t" x="{tx:.1f}" y="{height - 6}" text-anchor="middle">{tick:g}</text>')
    if not rows:
        parts.append(f'<text class="t" x="{LABEL_WIDTH}" y="15">no defined values</text>')
    for i, entry in enumerate(rows):
        m = entry["metrics"][metric_id]
        name = entry["model"]["name"]
        y = i * ROW_HEIGHT
        mid = y + ROW_HEIGHT / 2
        ci = f" [{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]" if m["ci_low"] is not None else ""
        start, end = sorted((x(0.0), x(m["value"])))
        parts.append(
            f'<g class="row"><title>{_e(name)} {_e(entry["model"]["version"])}: {_fmt(m["value"])}{ci} '
            f'(n={m["n"]})</title>'
            f'<text x="{LABEL_WIDTH - 6}" y="{mid + 4:.1f}" text-anchor="end">{_e(_short(name))}</text>'
            f'<rect class="b" x="{start:.1f}" y="{y + 4}" width="{end - start:.1f}" height="{ROW_HEIGHT - 8}"/>'
        )
        if m["ci_low"] is not None and m["ci_high"] is not None:
            lo, hi = x(m["ci_low"]), x(m["ci_high"])
            parts.append(
                f'<line class="w" x1="{lo:.1f}" x2="{hi:.1f}" y1="{mid}" y2="{mid}"/>'
                f'<line class="w" x1="{lo:.1f}" x2="{lo:.1f}" y1="{mid - 5}" y2="{mid + 5}"/>'
                f'<line class="w" x1="{hi:.1f}" x2="{hi:.1f}" y1="{mid - 5}" y2="{mid + 5}"/>'
            )
        parts.append(f'<text x="{LABEL_WIDTH + PLOT_WIDTH + 6}" y="{mid + 4:.1f}">{_fmt(m["value"])}</text></g>')
    parts.append("</svg></figure>")
    return "".join(parts)


def _link(label: str, url: str | None) -> str:
    return f'<a href="{_e(url)}">{_e(label)}</a>' if url else f"<span class=\"muted\">{_e(label)} (absent)</span>"


def _dl(items: Iterable[tuple[str, str]]) -> str:
    """``items`` are (label, already-escaped html) pairs."""
    return '<dl class="prov">' + "".join(f"<dt>{_e(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def _provenance(entry: dict[str, Any]) -> str:
    model, prov, links = entry["model"], entry["provenance"], entry["links"]
    env = prov["environment"]
    libraries = ", ".join(f"{k} {v}" for k, v in sorted((env.get("libraries") or {}).items()) if v)
    boot = prov["bootstrap"]
    commit = prov["radbench"].get("git_commit") or "unknown commit"
    limit = "whole split" if prov["dataset_limit"] is None else f"first {prov['dataset_limit']} only"
    return _dl([
        ("adapter version", _e(model["version"])),
        ("weights", f"<code>{_e(model['fingerprint'])}</code>"),
        ("trained on", f"{_e(model['trained_on'])} (this dataset: {_e(entry['trained_on_dataset'])})"),
        ("radbench", f"{_e(prov['radbench'].get('version'))} ({_e(commit)})"),
        ("created", _e(prov["created"])),
        ("seed", _e(prov["seed"])),
        ("bootstrap", _e(", ".join(f"{k}={v}" for k, v in sorted(boot.items())))),
        ("samples", f"{_e(entry['n_samples'])} ({_e(limit)}), {_e(entry['failures'])} failed"),
        ("environment", _e(f"Python {env.get('python', '?')}, {env.get('platform', '?')}; {libraries}")),
        ("files", " · ".join([_link("run folder", links["run"]), _link("results.json", links["results"]),
                              _link("scores.jsonl", links["scores"]),
                              _link("predictions.jsonl", links["predictions"])])),
        ("results sha256", f"<code>{_e(entry['results_sha256'])}</code>"),
    ])


def _lower(group: dict[str, Any]) -> set[str]:
    """Metrics whose configuration declares lower values better (they rank and sort smallest first)."""
    return {m for cfg in group["metric_configs"].values() for m in cfg.get("lower_is_better", [])}


def _metric_cell(metric_id: str, m: dict[str, Any] | None, css: str = "") -> str:
    """Value with its interval below; the metric's own rank among the entries on hover."""
    cls = f' class="{css}"' if css else ""
    if m is None or m.get("value") is None:
        return f'<td{cls} data-v="">–</td>'
    ci = f"<small>[{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]</small>" if m["ci_low"] is not None else ""
    title = f"{metric_id}: rank {m['rank']}" if "rank" in m else metric_id
    return f'<td{cls} data-v="{m["value"]!r}" title="{_e(title)}">{_fmt(m["value"])}{ci}</td>'


def _rank_cell(entry: dict[str, Any], primary: str | None, count: int) -> str:
    """The rank by the primary metric, with the range its interval allows when that is not one place."""
    row = entry["metrics"].get(primary or "", {})
    rank = row.get("rank")
    if rank is None:
        return '<td data-v="">–</td>'
    low, high = row.get("rank_range", [rank, rank])
    spread = f'<small title="ranks its 95% interval allows">{low}–{high}</small>' if count > 1 and low != high else ""
    return f'<td data-v="{_e(rank)}">{_e(rank)}{spread}</td>'


def _table(group: dict[str, Any], columns: list[str]) -> str:
    """Rank, model, n, the primary metric, then ``columns`` (one panel's metrics)."""
    primary = group["primary_metric"]
    lower = _lower(group)
    shown = _labels(group)
    metrics = ([primary] if primary else []) + [m for m in columns if m != primary]
    heads = [("#", "num", "ascending", "", "rank by the primary metric"),
             ("model", "text", "ascending", "text", "model; expand for provenance"),
             ("n", "num", "descending", "", "samples (failed ones below)")]
    heads += [(m, "num", "ascending" if m in lower else "descending", "primary" if m == primary else "",
               ("primary metric, " if m == primary else "") + ("lower is better" if m in lower else "higher is better"))
              for m in metrics]
    out = ['<div class="scroll"><table class="board"><thead><tr>']
    for i, (label, kind, first, css, title) in enumerate(heads):
        sort = ' aria-sort="ascending"' if i == 0 else ""
        text = _label(label, label in lower) + _source_note(shown.get(label, "")) if i >= 3 else _e(label)
        out.append(f'<th class="{css}" data-type="{kind}" data-first="{first}" title="{_e(title)}"{sort}>'
                   f'<button type="button">{text}</button></th>')
    out.append("</tr></thead><tbody>")
    count = len(group["entries"])
    for entry in group["entries"]:
        model = entry["model"]
        hover = f"weights {model['fingerprint']} · trained on {model['trained_on']} · adapter v{model['version']}"
        flag = entry["trained_on_dataset"]
        failed = f"<small>{entry['failures']} failed</small>"
        out.append(
            f"<tr>{_rank_cell(entry, primary, count)}"
            f'<td class="text model" data-v="{_e(model["name"])}"><details><summary title="{_e(hover)}">'
            f'{_e(model["name"])}</summary>{_provenance(entry)}</details>'
            f'<small>trained on this dataset: <span class="badge {_e(flag)}">{_e(flag)}</span></small></td>'
            f'<td data-v="{entry["n_samples"]}">{entry["n_samples"]}{failed}</td>'
            + "".join(_metric_cell(m, entry["metrics"].get(m), "primary" if m == primary else "") for m in metrics)
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    return "".join(out)


def panels(group: dict[str, Any]) -> list[tuple[str, list[str]]]:
    """The group's metrics other than the primary, by metric family, at most PANEL_COLUMNS to a panel.

    Families are the groups of ``metric_configs`` (bleu, rouge, umls, ...): the primary metric's
    family first (its siblings, such as a rationale's feature recall, are read with it), then the
    others in the order their first metric appears in the group's metric order.
    """
    primary = group["primary_metric"]
    family = {m: name for name, cfg in group["metric_configs"].items() for m in cfg.get("ids", [])}
    by_family: dict[str, list[str]] = {family.get(primary, "other"): []} if primary else {}
    for metric in group["metrics"]:
        if metric != primary:
            by_family.setdefault(family.get(metric, "other"), []).append(metric)
    out = []
    for name, metrics in by_family.items():
        if not metrics:
            continue
        chunks = [metrics[i: i + PANEL_COLUMNS] for i in range(0, len(metrics), PANEL_COLUMNS)]
        for number, chunk in enumerate(chunks, start=1):
            out.append((name if len(chunks) == 1 else f"{name} {number}/{len(chunks)}", chunk))
    return out


def _panel_body(group: dict[str, Any], columns: list[str]) -> str:
    lower = _lower(group)
    primary = group["primary_metric"]
    shown = ([primary] if primary else []) + columns
    names = _labels(group)
    charts = "".join(chart(m, group["entries"], m in lower, names.get(m, "")) for m in shown)
    return f'{_table(group, columns)}<div class="charts">{charts}</div>'


def _chooser(group: dict[str, Any]) -> str:
    """One table per panel of metrics, chosen by radio buttons styled as tabs (CSS only, no script).

    Every panel repeats the rank, model, n and primary columns, so the table stays narrow enough
    for an 800 px window while every metric is one click away.
    """
    choices = panels(group)
    if len(choices) <= 1:
        return _panel_body(group, choices[0][1] if choices else [])
    name = f"{group['id']}-metrics"
    inputs = "".join(
        f'<input type="radio" name="{_e(name)}" id="{_e(name)}-{i}"{" checked" if i == 0 else ""}>'
        f'<label for="{_e(name)}-{i}">{_e(label)}</label>'
        for i, (label, _) in enumerate(choices)
    )
    bodies = "".join(f'<div class="panel" data-metrics="{_e(" ".join(cols))}">{_panel_body(group, cols)}</div>'
                     for _, cols in choices)
    return f'<div class="chooser" role="group" aria-label="metric group">{inputs}{bodies}</div>'


def _group(group: dict[str, Any]) -> str:
    task, dataset, protocol = group["task"], group["dataset"], group["protocol"]
    demo = ' <span class="badge demo">DEMO DATA, NOT A BENCHMARK</span>' if dataset["is_demo"] else ""
    split = ""
    if group["split_reason"]:
        split = ('<p class="split">Ranked separately (--allow-mixed) from an earlier group of this task and dataset: '
                 + _e("; ".join(group["split_reason"])) + "</p>")
    count = len(group["entries"])
    primary = group["primary_metric"]
    if primary:
        way = "lowest" if primary in _lower(group) else "highest"
        order = f"ordered by the primary metric, <b>{_e(primary)}</b> ({way} first)"
    else:
        order = "no metric to order by"
    sources = labels.describe_sources(group["metric_configs"])
    scored = (f'<p class="muted sources">Scored with {_e(sources)}. Numbers from another concept source or '
              "encoder measure something else: they are ranked in their own group, never in this one.</p>"
              if sources else "")
    ranks = ("; # is the rank, with below it the ranks its 95% interval allows when they are more than one "
             "(from non-overlapping intervals; <code>radbench compare</code> gives a paired test)") if count > 1 else ""
    settings = _dl([
        ("dataset manifest", f"<code>{_e(dataset['manifest_hash'])}</code> ({_e(dataset['split'])} split)"),
        ("prompts", f"<code>{_e(protocol['prompt_hash'])}</code>, {_e(protocol['shots'])}-shot"),
        ("exemplars", f"<code>{_e(protocol['exemplar_manifest_hash'] or 'none in prompts')}</code>"),
        ("decoding", f"<code>{_e(json.dumps(protocol['gen_kwargs'], sort_keys=True))}</code>"),
    ]) + f"<pre>{_e(json.dumps(group['metric_configs'], indent=2, sort_keys=True))}</pre>"
    return (
        f'<section class="group" id="{_e(group["id"])}" data-task="{_e(task["name"])}" '
        f'data-dataset="{_e(dataset["name"])}">'
        f'<h2>{_e(task["name"])} <small>v{_e(task["version"])}</small> · {_e(dataset["name"])}{demo}</h2>{split}'
        f'<p class="muted">{_plural(count, "entry", "entries")}, {order}{ranks}. '
        f"Each cell: value with its 95% interval below it; {LOWER} marks a metric where lower is better.</p>"
        f"{scored}{_chooser(group)}"
        f"<details><summary>protocol and metric configuration</summary>{settings}</details>"
        "</section>"
    )


def _select(element_id: str, label: str, values: Iterable[str]) -> str:
    options = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in sorted(set(values)))
    return f'<label>{_e(label)} <select id="{element_id}"><option value="">all</option>{options}</select></label>'


def _style(groups: list[dict[str, Any]]) -> str:
    """STYLE plus one rule per panel position: the k-th checked radio button shows the k-th panel.

    The rules are generated for as many panels as the largest group has, so the chooser works
    without script; the whole style is still pinned by its hash in the Content-Security-Policy.
    """
    most = max([len(panels(g)) for g in groups] or [0])
    rules = "".join(f".chooser > input:nth-of-type({k}):checked ~ div.panel:nth-of-type({k}) {{ display: block; }}\n"
                    for k in range(1, most + 1))
    return STYLE + rules


def render(board: dict[str, Any]) -> str:
    """The page for a validated leaderboard."""
    groups = board["groups"]
    style = _style(groups)
    csp = (f"default-src 'none'; style-src {_csp_hash(style)}; script-src {_csp_hash(SCRIPT)}; "
           "img-src 'none'; base-uri 'none'; form-action 'none'")
    commit = board["radbench"]["git_commit"] or "unknown commit"
    demo = any(g["dataset"]["is_demo"] for g in groups)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(board['title'])}</title><style>{style}</style></head><body>"
        f"<header><h1>{_e(board['title'])}</h1>"
        f'<p class="muted">Built {_e(board["created"])} by radbench {_e(board["radbench"]["version"])} '
        f"({_e(commit)}) from {_plural(sum(len(g['entries']) for g in groups), 'run')} in "
        f"{_plural(len(groups), 'group')}."
        + (' <span class="badge demo">contains DEMO DATA, NOT A BENCHMARK</span>' if demo else "")
        + "</p>"
        f'<div class="filters">{_select("filter-task", "Task", (g["task"]["name"] for g in groups))}'
        f'{_select("filter-dataset", "Dataset", (g["dataset"]["name"] for g in groups))}'
        '<span id="filter-status" class="muted" aria-live="polite"></span></div></header>'
        f"<main>{''.join(_group(g) for g in groups)}</main>"
        '<footer class="muted">Choose a metric group above a table; click a column header to sort; expand a '
        "model for its provenance and run files. "
        "Generated by <code>radbench leaderboard html</code>; this file loads nothing from the network.</footer>"
        f"<script>{SCRIPT}</script></body></html>\n"
    )


def _rebase(url: str | None, source: Path, target: Path) -> str | None:
    """A link relative to ``source`` (the JSON's folder), made relative to ``target`` (the page's)."""
    if url is None:
        return None
    absolute = (source / unquote(url)).resolve()
    return quote(Path(os.path.relpath(absolute, target.resolve())).as_posix(), safe="/")


def write(leaderboard: Path, output: Path) -> str:
    """Render ``leaderboard`` (validated first) to ``output``; returns the page.

    Run-file links are stored relative to the JSON; they are rewritten relative to the page, so the
    page may be written to another folder than the JSON.
    """
    board = load(leaderboard)
    source, target = leaderboard.parent, output.parent
    if source.resolve() != target.resolve():
        for group in board["groups"]:
            for entry in group["entries"]:
                entry["links"] = {k: _rebase(v, source, target) for k, v in entry["links"].items()}
    page = render(board)
    atomic_write_text(output, page)
    return page
