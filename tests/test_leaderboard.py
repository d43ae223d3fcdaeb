"""``radbench leaderboard build`` and ``html``: grouping, ranking, refusal to mix, provenance, escaping."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import pytest

from radbench import registry
from radbench.cli import main
from radbench import schemas
from radbench.leaderboard import html
from radbench.runner import RunConfig, run
from radbench.tasks.vqa import VQATask
from tests.support.runs import copy_run_with

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, demo_run: Callable[[str, str], Path]) -> Path:
    """Both baselines on two demo tasks (copies of the session's runs), in one folder of runs."""
    root = tmp_path_factory.mktemp("lb-runs")
    for model in ("majority", "retrieval"):
        for task in ("diagnosis", "report"):
            shutil.copytree(demo_run(model, task), root / f"{model}-{task}")
    return root


@pytest.fixture(scope="module")
def demo_board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``radbench demo``'s leaderboard.json: both baselines on every task."""
    root = tmp_path_factory.mktemp("lb-demo")
    assert main(["demo", "--output", str(root), "--quiet"]) == 0
    return root / "leaderboard.json"


def _build(*args: str) -> int:
    return main(["leaderboard", "build", *args])


def test_build_groups_ranks_and_keeps_provenance(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "site" / "leaderboard.json"
    assert _build(str(runs), "--output", str(out)) == 0
    board = json.loads(out.read_text())
    schemas.validate(board, "leaderboard")
    assert [(g["task"]["name"], g["dataset"]["name"]) for g in board["groups"]] == [
        ("diagnosis", "demo"), ("report", "demo")]
    diagnosis = board["groups"][0]
    assert diagnosis["primary_metric"] == "accuracy"
    names = [e["model"]["name"] for e in diagnosis["entries"]]
    assert names == ["retrieval", "majority"]
    best, worst = (e["metrics"]["accuracy"] for e in diagnosis["entries"])
    assert (best["rank"], worst["rank"]) == (1, 2)
    assert best["ci_low"] <= best["value"] <= best["ci_high"]
    assert best["rank_range"] == [1, 1] and worst["rank_range"] == [2, 2]  # intervals do not overlap
    entry = diagnosis["entries"][0]
    assert entry["model"]["trained_on"] == "unknown" and entry["trained_on_dataset"] == "unknown"
    assert entry["provenance"]["radbench"]["version"]
    results = out.parent / unquote(entry["links"]["results"])
    assert results.resolve() == (runs / "retrieval-diagnosis" / "results.json").resolve()
    assert entry["results_sha256"] == hashlib.sha256(results.read_bytes()).hexdigest()
    assert (out.parent / unquote(entry["links"]["predictions"])).is_file()


def test_report_group_ranks_every_metric(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "lb.json"
    assert _build(str(runs / "majority-report"), str(runs / "retrieval-report" / "results.json"),
                  str(runs / "majority-report"), "--output", str(out)) == 0  # a run named twice counts once
    (group,) = json.loads(out.read_text())["groups"]
    assert group["primary_metric"] == "umls_neg_f1" and group["metrics"][:5] == [
        "umls_neg_f1", "bleu1", "bleu2", "bleu3", "bleu4"]
    values = [e["metrics"]["umls_neg_f1"]["value"] for e in group["entries"]]
    assert values == sorted(values, reverse=True)
    assert len(group["entries"]) == 2
    for metric in group["metrics"]:
        assert sorted(e["metrics"][metric]["rank"] for e in group["entries"]) in ([1, 2], [1, 1])


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda r: r["dataset"].update(manifest_hash="0" * 64), "dataset.manifest_hash"),
        (lambda r: r["task"].update(version="99"), "task.version"),
        (lambda r: r["metric_configs"]["accuracy"].update(version="99"), "metric_configs.accuracy.version"),
    ],
    ids=["dataset-hash", "task-version", "metric-config"],
)
def test_incomparable_runs_are_refused_unless_allow_mixed(runs: Path, tmp_path: Path, edit: Any, named: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    other = copy_run_with(runs / "majority-diagnosis", tmp_path / "other", edit)
    args = [str(runs / "retrieval-diagnosis"), str(other), "--output", str(tmp_path / "lb.json")]
    assert _build(*args) == 2
    err = capsys.readouterr().err
    assert named in err and "--allow-mixed" in err and err.count("\n") == 1
    assert not (tmp_path / "lb.json").exists()

    assert _build(*args, "--allow-mixed") == 0
    board = json.loads((tmp_path / "lb.json").read_text())
    assert board["allow_mixed"] and len(board["groups"]) == 2
    assert board["groups"][0]["split_reason"] == [] and named in board["groups"][1]["split_reason"][0]
    assert all(len(g["entries"]) == 1 for g in board["groups"])


def _scispacy(r: dict[str, Any]) -> None:
    umls = r["metric_configs"]["umls"]
    for key in ("index", "matcher", "concept_source"):
        umls.pop(key, None)
    umls.update(backend="scispacy", source_label="scispaCy UMLS", model="en_core_sci_lg", mode="linker")


def test_runs_with_another_concept_source_are_never_ranked_together(runs: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    base, other = runs / "retrieval-report", copy_run_with(runs / "majority-report", tmp_path / "other", _scispacy)
    args = [str(base), str(other), "--output", str(tmp_path / "lb.json")]
    assert _build(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"umls source: HPO index ({base}) vs scispaCy UMLS ({other})" in err
    assert "metric_configs.umls" not in err

    assert _build(*args, "--allow-mixed") == 0
    board = json.loads((tmp_path / "lb.json").read_text())
    assert [g["metric_labels"]["umls_precision"] for g in board["groups"]] == [
        "UMLS P · HPO index", "UMLS P · scispaCy UMLS"]
    assert board["groups"][1]["split_reason"] == [f"umls source: HPO index ({base}) vs scispaCy UMLS ({other})"]
    page = html.render(board)
    first, second = page.split('<section class="group"')[1:]
    assert "Scored with bertscore encoder: all-MiniLM-L6-v2, layer 6; umls source: HPO index." in first
    assert "umls source: scispaCy UMLS." in second and "HPO index" not in second.split("Ranked separately")[0]


def test_page_names_the_source_of_every_concept_and_bertscore_number(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "lb.json"
    assert _build(str(runs), "--output", str(out)) == 0
    group = next(g for g in json.loads(out.read_text())["groups"] if g["task"]["name"] == "report")
    page = html.render({**json.loads(out.read_text()), "groups": [group]})
    heads = re.findall(r"<button[^>]*>(.*?)</button>", page)
    sourced = [h for h in heads if "umls" in h or "bertscore" in h]
    assert sourced and all(h.endswith("<small>HPO index</small>") for h in sourced if "umls" in h)
    assert all(h.endswith("<small>all-MiniLM-L6-v2, layer 6</small>") for h in sourced if "bertscore" in h)
    assert not any("<small>" in h for h in heads if h.startswith("bleu"))
    captions = re.findall(r"<figcaption>(.*?) <small>", page)
    assert "UMLS-neg F1 · HPO index" in captions and "BERTScore F1 · all-MiniLM-L6-v2, layer 6" in captions
    assert "bleu1" in captions
    # A leaderboard built before metric_labels existed is labelled the same way from its metric configs.
    group.pop("metric_labels")
    assert html.render({**json.loads(out.read_text()), "groups": [group]}) == page


def test_training_data_provenance_is_flagged(runs: Path, tmp_path: Path) -> None:
    seen = copy_run_with(runs / "majority-diagnosis", tmp_path / "seen",
                      lambda r: r["model"].update(trained_on="mimic,demo"))
    clean = copy_run_with(runs / "retrieval-diagnosis", tmp_path / "clean", lambda r: r["model"].update(trained_on="none"))
    assert _build(str(seen), str(clean), "--output", str(tmp_path / "lb.json")) == 0
    (group,) = json.loads((tmp_path / "lb.json").read_text())["groups"]
    flags = {e["model"]["name"]: e["trained_on_dataset"] for e in group["entries"]}
    assert flags == {"majority": "yes", "retrieval": "no"}


def test_build_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    assert _build(str(tmp_path / "empty"), "--output", str(tmp_path / "lb.json")) == 2
    assert "no results.json" in capsys.readouterr().err
    assert main(["leaderboard", "html", str(tmp_path / "missing.json"), "--output", str(tmp_path / "i.html")]) == 2
    (tmp_path / "bad.json").write_text('{"kind": "radbench-leaderboard"}')
    assert main(["leaderboard", "html", str(tmp_path / "bad.json"), "--output", str(tmp_path / "i.html")]) == 2
    assert "not a radbench leaderboard" in capsys.readouterr().err


@pytest.fixture(scope="module")
def evil_page(runs: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A leaderboard whose strings are hostile, rendered to a page in another folder than the JSON."""
    root = tmp_path_factory.mktemp("evil")
    copy_run_with(runs / "majority-diagnosis", root / "runs" / "evil\"'<b>", lambda r: r["model"].update(
        name=EVIL, version='1" onmouseover="alert(2)', fingerprint="</td></tr></table><img src=x onerror=alert(3)>"))
    shutil.copytree(runs / "retrieval-diagnosis", root / "runs" / "javascript:alert(4)")
    board = root / "data" / "leaderboard.json"
    assert _build(str(root / "runs"), "--output", str(board), "--title", "<i>title</i>") == 0
    page = root / "site" / "index.html"
    assert main(["leaderboard", "html", str(board), "--output", str(page)]) == 0
    return page, page.read_text()


def test_html_escapes_every_string(evil_page: tuple[Path, str]) -> None:
    _, text = evil_page
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<i>title</i>" not in text and "<img" not in text and 'onmouseover="' not in text
    assert len(re.findall(r"<script\b", text)) == 1
    assert 'href="javascript' not in text and "href=\"../runs/javascript%3Aalert%284%29/results.json\"" in text


def test_html_is_self_contained_and_pins_its_inline_code(evil_page: tuple[Path, str]) -> None:
    page, text = evil_page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), "the page must load nothing from the network"
    assert "<link" not in text and "@import" not in text
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', text).group(1).replace("&#x27;", "'")
    assert "default-src 'none'" in csp
    for tag in ("script", "style"):
        body = re.search(rf"<{tag}>(.*?)</{tag}>", text, re.S).group(1)
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    for href in re.findall(r'href="([^"]+)"', text):  # links were rebased from data/ to site/
        assert (page.parent / unquote(href)).exists(), href


def test_chart_has_a_bar_and_whisker_per_entry(runs: Path, tmp_path: Path) -> None:
    assert _build(str(runs / "majority-diagnosis"), str(runs / "retrieval-diagnosis"),
                  "--output", str(tmp_path / "lb.json")) == 0
    board = json.loads((tmp_path / "lb.json").read_text())
    svg = html.chart("accuracy", board["groups"][0]["entries"])
    assert svg.count('class="b"') == 2 and svg.count('class="w"') == 6  # a line and two caps each


def test_error_rates_rank_the_smallest_first(tmp_path: Path) -> None:
    from radbench.leaderboard import build as build_mod

    entries = [{"metrics": {"negation_error_rate": {"value": v, "ci_low": v - 0.01, "ci_high": v + 0.01}}}
               for v in (0.30, 0.10, 0.20)]
    build_mod._rank(entries, "negation_error_rate", higher_is_better=False)
    assert [e["metrics"]["negation_error_rate"]["rank"] for e in entries] == [3, 1, 2]
    assert [e["metrics"]["negation_error_rate"]["rank_range"] for e in entries] == [[3, 3], [1, 1], [2, 2]]
    dirs = []
    for model in ("majority", "retrieval"):
        dirs.append(tmp_path / model)
        run(RunConfig(model=model, task="rationale", dataset="demo", output=dirs[-1], quiet=True,
                      metrics="negation_error_rate,diagnosis_hit"))
    board = build_mod.build(dirs, tmp_path / "lb.json")
    rows = {e["model"]["name"]: e["metrics"]["negation_error_rate"] for e in board["groups"][0]["entries"]}
    best = min(rows, key=lambda name: rows[name]["value"])
    assert rows[best]["rank"] == 1


@pytest.mark.parametrize(("task", "primary"), [("vqa", "accuracy"), ("diagnosis", "accuracy"),
                                               ("rationale", "diagnosis_hit"), ("report", "umls_neg_f1")])
def test_each_task_declares_its_primary_metric_among_its_defaults(task: str, primary: str) -> None:
    cls = registry.get("tasks", task)
    assert cls.primary_metric == primary and primary in cls.default_metrics


def test_vqa_defaults_leave_out_the_near_zero_bleu_orders(tmp_path: Path) -> None:
    """BLEU-2..4 are about 0 on one-word answers; as defaults they only weaken compare's Holm correction."""
    assert VQATask.default_metrics == ("accuracy", "exact_match", "token_recall", "parse_failure_rate", "bleu1")
    res = run(RunConfig(model="majority", task="vqa", dataset="demo", output=tmp_path / "vqa", quiet=True))
    assert list(res["metrics"]) == list(VQATask.default_metrics)


def _page_groups(text: str) -> dict[str, str]:
    return dict(re.findall(r'<section class="group" id="[^"]*" data-task="([^"]+)".*?>(.*?)</section>', text, re.S))


def test_html_leads_with_the_primary_metric_and_splits_the_rest_into_panels(demo_board: Path) -> None:
    board = json.loads(demo_board.read_text())
    text = html.render(board)
    sections = _page_groups(text)
    for group in board["groups"]:
        chosen = html.panels(group)
        shown = [m for _, cols in chosen for m in cols]
        assert sorted(shown) == sorted(set(group["metrics"]) - {group["primary_metric"]})  # each metric once
        assert all(0 < len(cols) <= html.PANEL_COLUMNS for _, cols in chosen)
        section = sections[group["task"]["name"]]
        tables = re.findall(r"<thead><tr>(.*?)</tr></thead>", section)
        assert len(tables) == max(len(chosen), 1)
        primary = group["primary_metric"]
        # A concept metric's head names its source on a second line (rationale: "diagnosis_hit" + "HPO index").
        source = group["metric_labels"][primary].partition(" · ")[2]
        assert (source == "HPO index") == (group["task"]["name"] in ("rationale", "report"))
        for head in tables:  # rank, model, n, then the primary metric in every panel
            labels = [re.sub(r"<[^>]+>", "", h) for h in re.findall(r"<button[^>]*>(.*?)</button>", head)]
            assert labels[:4] == ["#", "model", "n", primary + source]
        assert section.count('type="radio"') == (len(chosen) if len(chosen) > 1 else 0)
    rationale = html.panels(next(g for g in board["groups"] if g["task"]["name"] == "rationale"))
    assert rationale[0][0].startswith("rationale") and "feature_recall" in rationale[0][1]


def test_lower_is_better_metrics_are_marked_and_sorted_smallest_first(demo_board: Path) -> None:
    board = json.loads(demo_board.read_text())
    vqa = next(g for g in board["groups"] if g["task"]["name"] == "vqa")
    text = _page_groups(html.render(board))["vqa"]
    head = re.search(r'<th class="" data-type="num" data-first="(\w+)" title="lower is better">'
                     r'<button type="button">parse_<wbr>failure_<wbr>rate <span title="lower is better">↓</span>',
                     text)
    assert head and head.group(1) == "ascending"
    assert '<th class="" data-type="num" data-first="descending" title="higher is better"><button type="button">' \
           'exact_<wbr>match</button>' in text
    entries = [{"model": {"name": n, "version": "1"}, "metrics": {"parse_failure_rate": {
        "value": v, "ci_low": v, "ci_high": v, "n": 5}}} for n, v in (("bad", 0.4), ("good", 0.1))]
    svg = html.chart("parse_failure_rate", entries, lower_is_better=True)
    assert svg.index(">good<") < svg.index(">bad<") and "↓" in svg and "lower is better" in svg
    assert "parse_failure_rate" in vqa["metric_configs"]["accuracy"]["lower_is_better"]


def _bar_widths(svg: str) -> list[float]:
    return [float(w) for w in re.findall(r'class="b" x="[^"]+" y="[^"]+" width="([^"]+)"', svg)]


def test_bounded_metrics_are_drawn_on_a_fixed_zero_to_one_axis() -> None:
    """A BLEU-3 of 1e-13 is no bar at all, not a full one; 0.5 is half the plot whatever the others."""
    def entries(*values: float) -> list[dict[str, Any]]:
        return [{"model": {"name": f"m{i}", "version": "1"},
                 "metrics": {"bleu3": {"value": v, "ci_low": v / 2, "ci_high": v, "n": 3}}}
                for i, v in enumerate(values)]

    assert _bar_widths(html.chart("bleu3", entries(1e-13))) == [0.0]
    assert _bar_widths(html.chart("bleu3", entries(0.5, 1e-13))) == [html.PLOT_WIDTH / 2, 0.0]
    assert ">1</text>" in html.chart("bleu3", entries(1e-13))  # the axis ends at 1
    seconds = html.chart("bleu3", entries(3.0, 1.5))  # a metric outside [0, 1] gets a round axis above it
    assert _bar_widths(seconds) == [html.PLOT_WIDTH * 3 / 5, html.PLOT_WIDTH * 1.5 / 5]


def test_one_entry_reads_right(runs: Path, tmp_path: Path) -> None:
    assert _build(str(runs / "majority-report"), "--output", str(tmp_path / "lb.json")) == 0
    text = html.render(json.loads((tmp_path / "lb.json").read_text()))
    plain = re.sub(r"<[^>]+>", "", text)
    assert "1 entry," in plain and "1 entries" not in plain and "from 1 run in 1 group." in plain
    assert "1–1" not in plain and "(1–1)" not in plain and "rank 1 (" not in plain
    assert "rank ranges" not in plain and "interval allows" not in plain


def test_rank_ranges_show_only_when_they_span_places(runs: Path, tmp_path: Path) -> None:
    assert _build(str(runs / "majority-report"), str(runs / "retrieval-report"), "--output",
                  str(tmp_path / "lb.json")) == 0
    board = json.loads((tmp_path / "lb.json").read_text())
    (group,) = board["groups"]
    text = html.render(board)
    for entry in group["entries"]:
        row = entry["metrics"][group["primary_metric"]]
        low, high = row["rank_range"]
        spread = f'<small title="ranks its 95% interval allows">{low}–{high}</small>'
        assert (spread in text) == (low != high)
    assert "2 entries," in text


def test_browser_check_skips_in_one_line_without_chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from radbench.leaderboard import browser

    page = tmp_path / "index.html"
    page.write_text("<!DOCTYPE html><title>x</title>")
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    assert browser.main([str(page)]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "skipped" in out and "chromium" in out
    assert not list(tmp_path.glob("*.png"))
    assert browser.main([str(tmp_path / "missing.html")]) == 2


def test_results_doc_examples_name_real_tasks_and_datasets() -> None:
    """Every ``--task``/``--dataset`` in docs/results.md's commands is one radbench knows."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "results.md").read_text()
    used = re.findall(r"--(task|dataset) ([\w.-]+)", doc)
    assert ("dataset", "mimic-cxr") in used
    for kind, name in used:
        assert name in registry.names(kind + "s"), f"docs/results.md: --{kind} {name} is not a registered {kind}"


def _tampered(runs: Path, tmp_path: Path, edit: Any, raw: bool = False) -> Path:
    """A copy of the majority and retrieval diagnosis runs, the retrieval one's results.json edited."""
    import shutil

    root = tmp_path / "tampered"
    for name in ("majority-diagnosis", "retrieval-diagnosis"):
        shutil.copytree(runs / name, root / name)
    file = root / "retrieval-diagnosis" / "results.json"
    if raw:
        file.write_text(edit(file.read_text()))
    else:
        data = json.loads(file.read_text())
        edit(data)
        file.write_text(json.dumps(data))
    return root


def _first_metric(data: dict[str, Any]) -> dict[str, Any]:
    return data["metrics"][sorted(data["metrics"])[0]]


TAMPERING = {
    "value-raised-inside-its-ci": lambda d: _first_metric(d).update(
        value=(_first_metric(d)["value"] + _first_metric(d)["ci_high"]) / 2 + 1e-6),
    "value-outside-its-ci": lambda d: _first_metric(d).update(value=0.99, ci_high=0.85) if _first_metric(d)["ci_high"] < 0.98 else _first_metric(d).update(ci_high=_first_metric(d)["value"] - 0.01),
    "inverted-ci": lambda d: _first_metric(d).update(ci_low=_first_metric(d)["ci_high"], ci_high=_first_metric(d)["ci_low"]),
    "n-too-large": lambda d: _first_metric(d).update(n=_first_metric(d)["n"] + 1),
    "subset-edited": lambda d: [t[sorted(t)[0]].update(n=t[sorted(t)[0]]["n"] + 1) for t in d["subsets"].values()][:1]
    if d.get("subsets") else _first_metric(d).update(n=0),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_a_run_whose_numbers_disagree_with_its_scores_is_refused_by_name(
        case: str, runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _tampered(runs, tmp_path, TAMPERING[case])
    out = tmp_path / "lb.json"
    assert _build(str(root), "--output", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert "retrieval-diagnosis" in err and "\n" not in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "Infinity"])
def test_non_finite_numbers_are_refused_and_never_reach_the_leaderboard(
        literal: str, runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import re

    root = _tampered(runs, tmp_path, lambda text: re.sub(r'"ci_low": [-0-9.e]+', f'"ci_low": {literal}', text, count=1),
                     raw=True)
    out = tmp_path / "lb.json"
    assert _build(str(root), "--output", str(out)) == 2
    err = capsys.readouterr().err
    assert "retrieval-diagnosis" in err and literal in err
    assert not out.exists()


def test_untampered_runs_still_build(runs: Path, tmp_path: Path) -> None:
    root = _tampered(runs, tmp_path, lambda d: None)
    out = tmp_path / "lb.json"
    assert _build(str(root), "--output", str(out)) == 0
    assert "NaN" not in out.read_text() and "Infinity" not in out.read_text()


def test_a_build_killed_mid_write_leaves_nothing_the_next_build_keeps(runs: Path, tmp_path: Path) -> None:
    """A build SIGKILLed between writing its temporary and renaming it leaves ``.lb.json.*``; the next
    build removes it (a temporary a minute old is no write in progress) and keeps a fresh one."""
    import os
    import subprocess
    import sys
    import time

    from tests.conftest import TESTS

    board = tmp_path / "lb.json"
    script = ("import os, signal, sys; os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL); "
              "from radbench.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", script, "leaderboard", "build", str(runs / "majority-diagnosis"),
                           "--output", str(board)], cwd=TESTS.parent, env={**os.environ, "PYTHONPATH": str(TESTS.parent)},
                          capture_output=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = list(tmp_path.glob(".lb.json.*"))
    assert len(left) == 1 and not board.exists()
    old = time.time() - 120
    os.utime(left[0], (old, old))
    fresh = tmp_path / ".lb.json.inprogress"
    fresh.write_text("{}")
    assert _build(str(runs / "majority-diagnosis"), "--output", str(board)) == 0
    assert board.is_file() and sorted(tmp_path.glob(".lb.json.*")) == [fresh]
