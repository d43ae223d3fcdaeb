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

from radbench.cli import main
from radbench.leaderboard import html, schemas
from radbench.runner import RunConfig, run
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
    assert group["metrics"][:4] == ["bleu1", "bleu2", "bleu3", "bleu4"]
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
