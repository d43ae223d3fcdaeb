"""Console tables: they fit the terminal (wide when it fits, long otherwise), carry one legend line,
print the results' warnings, and a resume says how much was already done."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from radbench import tables
from radbench.cli import TABLE_METRICS, main, print_results_table
from radbench.store import RESULTS


@pytest.fixture(scope="module")
def demo_rows(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, dict]]:
    out = tmp_path_factory.mktemp("demo")
    rows = []
    for task in ("vqa", "report"):
        for model in ("majority", "retrieval"):
            folder = out / f"{model}-{task}"
            assert main(["run", "--model", model, "--task", task, "--dataset", "demo", "--output", str(folder),
                         "--quiet"]) == 0
            rows.append((model, task, json.loads((folder / RESULTS).read_text())))
    return rows


def render(rows, width: int) -> str:
    buffer = io.StringIO()
    tables.print_results(rows, "demo", TABLE_METRICS, tables.console(file=buffer, width=width))
    return buffer.getvalue()


def test_narrow_terminal_gets_the_long_layout_and_no_line_overflows(demo_rows) -> None:
    text = render(demo_rows, 80)
    assert max(len(line) for line in text.splitlines()) <= 80
    header = next(line for line in text.splitlines() if "model" in line)
    assert "metric" in header and "value [95% CI]" in header  # one row per run and metric
    # Every number survives, unabbreviated: nothing is cut to "0.4…".
    for _, _, res in demo_rows:
        for metric_id in TABLE_METRICS:
            if metric_id in res["metrics"]:
                assert tables.value_ci(res["metrics"][metric_id]) in text
    assert "…" not in text


def test_wide_terminal_gets_one_row_per_run(demo_rows) -> None:
    text = render(demo_rows, 200)
    assert max(len(line) for line in text.splitlines()) <= 200
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "model" in line)
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("┡"))
    header = " ".join(lines[start:end])  # a sourced label may wrap inside its column header
    assert "bleu1" in header and "umls_f1" in header
    assert "umls source: HPO index" in text  # the legend names the concept source of the short ids
    assert "metric" not in header.replace("metric source", "")
    assert sum("retrieval" in line for line in text.splitlines()) == 2


def test_console_follows_the_columns_variable(demo_rows, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    for columns in ("80", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        print_results_table(demo_rows, "demo")
        text = capsys.readouterr().out
        assert max(len(line) for line in text.splitlines()) <= int(columns)
    monkeypatch.setenv("COLUMNS", "80")
    print_results_table(demo_rows, "demo")
    assert "value [95% CI]" in capsys.readouterr().out.splitlines()[2]


def test_one_legend_line_says_how_to_read_and_where_metrics_come_from(demo_rows) -> None:
    text = render(demo_rows, 400)
    legend = [line for line in text.splitlines() if line.startswith("value [95% CI] =")]
    assert len(legend) == 1
    line = legend[0]
    assert "point estimate with 95% bootstrap CI over" in line
    assert "metric source:" in line and "bleu=pycocoevalcap" in line and "bertscore=BERTScore" in line
    assert "↓ = lower is better" in line  # VQA's parse_failure_rate is in the runs
    # Why a constant-answer baseline scores ~0.8 on BERTScore: the encoder is not rescaled.
    assert "BERTScore is not rescaled" in line


def test_concept_and_encoder_metrics_are_shown_with_their_source(demo_rows) -> None:
    """A reader must not take the HPO-index number for the paper's UMLS metric: the row says its source."""
    text = render(demo_rows, 80)
    assert "UMLS F1 · HPO index" in text  # a long label wraps inside its cell at 80 columns
    assert "BERTScore F1 ·" in text and "all-MiniLM-L6-v2, layer 6" in text
    assert "umls_f1" not in text and "bertscore_f1" not in text


def test_legend_names_the_cluster_unit_actually_resampled() -> None:
    patient = {"bootstrap": {"cluster": "patient/study"}, "metric_configs": {}}
    sample = {"bootstrap": {"cluster": "sample"}, "metric_configs": {}}
    assert tables.legend([patient]).endswith("over patient clusters")
    assert "over samples" in tables.legend([sample])


def test_warnings_are_printed_under_the_table() -> None:
    res = {"n_samples": 3, "failures": {"count": 0}, "bootstrap": {"cluster": "patient/study"}, "metric_configs": {},
           "metrics": {"accuracy": {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": 3}},
           "warnings": ["95% CIs rest on 1 patient/study cluster, fewer than 10"]}
    buffer = io.StringIO()
    tables.print_metric_list(res, "one patient", tables.console(file=buffer, width=200))
    assert "warning: 95% CIs rest on 1 patient/study cluster" in buffer.getvalue()


def test_resume_says_how_much_was_done(tmp_path: Path, capsys) -> None:
    args = ["run", "--model", "majority", "--task", "diagnosis", "--dataset", "demo", "--output", str(tmp_path)]
    assert main([*args, "--limit", "5", "--quiet"]) == 0
    capsys.readouterr()
    assert main([*args, "--limit", "8"]) == 0
    assert "radbench: resuming: 5 of 8 done" in capsys.readouterr().err
    assert main(args[:-2] + ["--output", str(tmp_path / "fresh"), "--limit", "3"]) == 0
    assert "resuming" not in capsys.readouterr().err
