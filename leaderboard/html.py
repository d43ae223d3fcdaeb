"""``radbench leaderboard html``: one self-contained static page from ``leaderboard.json``.

The page is rendered here, in Python, with every string from the results passed through
:func:`html.escape`, so it is complete without JavaScript and no result text ever becomes markup (a
model named ``<script>alert(1)</script>`` is shown as those characters). The small inline script
only adds sorting and filtering. A Content-Security-Policy that allows exactly the inline script and
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

from radbench.leaderboard.build import load
from radbench.store import atomic_write_text

STYLE = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #d9dee7; --accent: #2f6fb3;
  --bar: #8fb3dc; --whisker: #1d2330; --warn: #9a3b00; --bg-alt: #f5f7fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); }
header, main, footer { max-width: 1200px; margin: 0 auto; padding: 12px 20px; }
header h1 { font-size: 1.5em; margin: 8px 0 4px; }
.muted, small { color: var(--muted); }
.filters { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; margin-top: 8px; }
.filters select { font: inherit; padding: 2px 6px; }
section.group { border-top: 2px solid var(--line); margin-top: 18px; padding-top: 6px; }
section.group h2 { font-size: 1.2em; margin: 6px 0; }
.badge { display: inline-block; font-size: 0.75em; font-weight: 600; padding: 1px 6px; border-radius: 8px;
  border: 1px solid currentColor; vertical-align: middle; margin-left: 6px; }
.badge.demo, .badge.yes { color: var(--warn); }
.badge.no { color: #2d6a2d; }
.badge.unknown { color: var(--muted); }
.split { color: var(--warn); }
.scroll { overflow-x: auto; }
table.board { border-collapse: collapse; width: 100%; margin: 8px 0; }
table.board th, table.board td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: right;
  vertical-align: top; white-space: nowrap; }
table.board th.text, table.board td.text { text-align: left; white-space: normal; }
table.board tbody tr:nth-child(even) { background: var(--bg-alt); }
table.board th button { font: inherit; font-weight: 600; background: none; border: 0; padding: 0; cursor: pointer;
  color: var(--ink); }
table.board th[aria-sort="ascending"] button::after { content: " \\25B2"; }
table.board th[aria-sort="descending"] button::after { content: " \\25BC"; }
td.model { min-width: 11em; }
td.model summary { cursor: pointer; font-weight: 600; overflow-wrap: anywhere; }
dl.prov { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 6px 0; font-size: 0.9em; }
dl.prov dt { color: var(--muted); }
dl.prov dd { margin: 0; overflow-wrap: anywhere; }
pre { background: var(--bg-alt); padding: 6px; overflow-x: auto; font-size: 0.85em; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 24px; }
figure.chart { margin: 0; }
figure.chart figcaption { font-weight: 600; }
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
    status.textContent = shown + " of " + groups.length + " groups shown";
  }
  task.addEventListener("change", applyFilters);
  dataset.addEventListener("change", applyFilters);
  applyFilters();
})();
"""

LABEL_WIDTH, PLOT_WIDTH, VALUE_WIDTH, ROW_HEIGHT, AXIS_HEIGHT = 160, 280, 50, 22, 22


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"


def _e(value: Any) -> str:
    """Every string that reaches the page goes through here (text and attribute values alike)."""
    return escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _short(text: str, limit: int = 26) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nice_max(value: float) -> float:
    """An axis end at or above ``value``: 1, 2, 2.5 or 5 times a power of ten (0.05, 0.2, 1...)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value - 1e-12)


def chart(metric_id: str, entries: list[dict[str, Any]]) -> str:
    """A horizontal bar per entry with its 95% interval as a whisker; the full text on hover."""
    rows = [e for e in entries if e["metrics"].get(metric_id, {}).get("value") is not None]
    rows.sort(key=lambda e: -e["metrics"][metric_id]["value"])
    top = max([max(e["metrics"][metric_id]["value"], e["metrics"][metric_id]["ci_high"] or 0) for e in rows] or [1])
    scale_max = _nice_max(top)
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH
    height = AXIS_HEIGHT + ROW_HEIGHT * max(len(rows), 1)

    def x(value: float) -> float:
        return LABEL_WIDTH + PLOT_WIDTH * max(0.0, min(value, scale_max)) / scale_max

    parts = [
        f'<figure class="chart"><figcaption>{_e(metric_id)} <small>(bars: value; whiskers: 95% CI)</small>'
        f'</figcaption><svg viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
        f'aria-label="{_e(metric_id)} by model with 95% confidence intervals">'
    ]
    for tick in (0.0, scale_max / 2, scale_max):
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
        parts.append(
            f'<g class="row"><title>{_e(name)} {_e(entry["model"]["version"])}: {_fmt(m["value"])}{ci} '
            f'(n={m["n"]})</title>'
            f'<text x="{LABEL_WIDTH - 6}" y="{mid + 4:.1f}" text-anchor="end">{_e(_short(name))}</text>'
            f'<rect class="b" x="{LABEL_WIDTH}" y="{y + 4}" width="{x(m["value"]) - LABEL_WIDTH:.1f}" '
            f'height="{ROW_HEIGHT - 8}"/>'
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


def _metric_cell(m: dict[str, Any] | None) -> str:
    if m is None or m.get("value") is None:
        return '<td data-v="">–</td>'
    ci = f" <small>[{_fmt(m['ci_low'])}, {_fmt(m['ci_high'])}]</small>" if m["ci_low"] is not None else ""
    low, high = m.get("rank_range", [m.get("rank"), m.get("rank")])
    rank = f"<br><small>rank {m['rank']} ({low}–{high})</small>" if "rank" in m else ""
    return f'<td data-v="{m["value"]!r}">{_fmt(m["value"])}{ci}{rank}</td>'


def _table(group: dict[str, Any]) -> str:
    primary = group["primary_metric"]
    heads = [("#", "num", "ascending", ""), ("model", "text", "ascending", "text"),
             ("trained on this dataset", "text", "ascending", "text"), ("n", "num", "descending", ""),
             ("failed", "num", "ascending", "")]
    heads += [(m, "num", "descending", "") for m in group["metrics"]]
    out = ['<div class="scroll"><table class="board"><thead><tr>']
    for i, (label, kind, first, css) in enumerate(heads):
        sort = ' aria-sort="ascending"' if i == 0 else ""
        out.append(f'<th class="{css}" data-type="{kind}" data-first="{first}"{sort}>'
                   f'<button type="button">{_e(label)}</button></th>')
    out.append("</tr></thead><tbody>")
    for entry in group["entries"]:
        model = entry["model"]
        rank = entry["metrics"].get(primary or "", {}).get("rank", "")
        hover = f"weights {model['fingerprint']} · trained on {model['trained_on']} · adapter v{model['version']}"
        flag = entry["trained_on_dataset"]
        out.append(
            f'<tr><td data-v="{_e(rank)}">{_e(rank) or "–"}</td>'
            f'<td class="text model" data-v="{_e(model["name"])}"><details><summary title="{_e(hover)}">'
            f'{_e(model["name"])}</summary>{_provenance(entry)}</details></td>'
            f'<td class="text" data-v="{_e(flag)}"><span class="badge {_e(flag)}">{_e(flag)}</span></td>'
            f'<td data-v="{entry["n_samples"]}">{entry["n_samples"]}</td>'
            f'<td data-v="{entry["failures"]}">{entry["failures"]}</td>'
            + "".join(_metric_cell(entry["metrics"].get(m)) for m in group["metrics"])
            + "</tr>"
        )
    out.append("</tbody></table></div>")
    return "".join(out)


def _group(group: dict[str, Any]) -> str:
    task, dataset, protocol = group["task"], group["dataset"], group["protocol"]
    demo = ' <span class="badge demo">DEMO DATA, NOT A BENCHMARK</span>' if dataset["is_demo"] else ""
    split = ""
    if group["split_reason"]:
        split = ('<p class="split">Ranked separately (--allow-mixed) from an earlier group of this task and dataset: '
                 + _e("; ".join(group["split_reason"])) + "</p>")
    primary = f"ordered by {_e(group['primary_metric'])}; " if group["primary_metric"] else ""
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
        f'<p class="muted">{len(group["entries"])} entries; {primary}'
        f"rank ranges (in brackets) come from non-overlapping 95% intervals; "
        f"<code>radbench compare</code> gives a paired test.</p>"
        f"{_table(group)}"
        f"<details><summary>protocol and metric configuration</summary>{settings}</details>"
        f'<div class="charts">{"".join(chart(m, group["entries"]) for m in group["metrics"])}</div>'
        "</section>"
    )


def _select(element_id: str, label: str, values: Iterable[str]) -> str:
    options = "".join(f'<option value="{_e(v)}">{_e(v)}</option>' for v in sorted(set(values)))
    return f'<label>{_e(label)} <select id="{element_id}"><option value="">all</option>{options}</select></label>'


def render(board: dict[str, Any]) -> str:
    """The page for a validated leaderboard."""
    groups = board["groups"]
    csp = (f"default-src 'none'; style-src {_csp_hash(STYLE)}; script-src {_csp_hash(SCRIPT)}; "
           "img-src 'none'; base-uri 'none'; form-action 'none'")
    commit = board["radbench"]["git_commit"] or "unknown commit"
    demo = any(g["dataset"]["is_demo"] for g in groups)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(board['title'])}</title><style>{STYLE}</style></head><body>"
        f"<header><h1>{_e(board['title'])}</h1>"
        f'<p class="muted">Built {_e(board["created"])} by radbench {_e(board["radbench"]["version"])} '
        f"({_e(commit)}) from {sum(len(g['entries']) for g in groups)} runs in {len(groups)} groups."
        + (' <span class="badge demo">contains DEMO DATA, NOT A BENCHMARK</span>' if demo else "")
        + "</p>"
        f'<div class="filters">{_select("filter-task", "Task", (g["task"]["name"] for g in groups))}'
        f'{_select("filter-dataset", "Dataset", (g["dataset"]["name"] for g in groups))}'
        '<span id="filter-status" class="muted" aria-live="polite"></span></div></header>'
        f"<main>{''.join(_group(g) for g in groups)}</main>"
        '<footer class="muted">Click a column header to sort; expand a model for its provenance and run files. '
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
