"""``radbench compare``: exit codes 0/1/2, the paired bootstrap on real runs, and what it reports."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from radbench import compare, schemas, stats
from radbench.cli import main
from radbench.runner import RunConfig, run
from radbench.stats import cluster_draws
from tests.support.runs import copy_run_with


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, demo_run: Callable[[str, str], Path]) -> dict[str, Path]:
    """Both baselines on the demo's diagnosis, report and VQA tasks (the session's), plus a re-run of one."""
    root = tmp_path_factory.mktemp("compare-runs")
    out = {f"{model}-{task}": demo_run(model, task)
           for model, task in [("majority", "diagnosis"), ("retrieval", "diagnosis"), ("majority", "report"),
                               ("retrieval", "report"), ("retrieval", "vqa")]}
    out["rerun"] = root / "rerun"
    run(RunConfig(model="retrieval", task="report", dataset="demo", output=out["rerun"], quiet=True))
    return out




def test_identical_rerun_exits_0_with_zero_differences(runs: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    md, js = tmp_path / "summary.md", tmp_path / "cmp.json"
    code = main(["compare", str(runs["retrieval-report"]), str(runs["rerun"]), "--fail-on-regression",
                 "--markdown", str(md), "--json", str(js)])
    assert code == 0, capsys.readouterr()
    report = json.loads(js.read_text())
    schemas.validate(report, "compare")
    assert report["comparable"] and not report["regression"]
    assert {m["status"] for m in report["metrics"]} == {"not_significant"}
    assert all(m["diff"] == 0 and m["p_value"] == 1 for m in report["metrics"])
    assert "no significant regression" in md.read_text()


def test_regression_exits_1_only_with_fail_on_regression(runs: dict[str, Path], tmp_path: Path) -> None:
    base, new = str(runs["retrieval-diagnosis"]), str(runs["majority-diagnosis"])
    md = tmp_path / "summary.md"
    assert main(["compare", base, new]) == 0
    assert main(["compare", base, new, "--fail-on-regression", "--markdown", str(md)]) == 1
    text = md.read_text()
    assert "▼ regression" in text and "| accuracy |" in text
    assert text.startswith("### radbench compare: ▼ 1 significant regression")
    # The reverse direction is an improvement: never a failure.
    assert main(["compare", new, base, "--fail-on-regression"]) == 0


def test_min_effect_tolerates_a_significant_but_small_drop(runs: dict[str, Path]) -> None:
    base, new = compare.load_run(runs["retrieval-diagnosis"]), compare.load_run(runs["majority-diagnosis"])
    strict = compare.compare(base, new)
    (acc,) = strict.metrics
    assert acc.status == "regression" and acc.ci_high < 0 and acc.p_value < 0.05
    lenient = compare.compare(base, new, min_effect=abs(acc.diff) + 0.01)
    assert lenient.metrics[0].status == "within_tolerance"
    assert lenient.exit_code(fail_on_regression=True) == 0


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda r: r["dataset"].update(manifest_hash="0" * 64), "dataset.manifest_hash"),
        (lambda r: r["task"].update(version="99"), "task.version"),
        (lambda r: r.update(prompt_hash="f" * 64), "prompt_hash"),
        (lambda r: r.update(shots=3), "shots"),
        (lambda r: r["gen_kwargs"].update(max_new_tokens=7), "gen_kwargs.max_new_tokens"),
        (lambda r: r["metric_configs"]["bleu"].update(tokenizer="13a"), "metric_configs.bleu.tokenizer"),
    ],
    ids=["dataset-hash", "task-version", "prompt", "shots", "gen-kwargs", "metric-config"],
)
def test_incomparable_runs_exit_2_naming_the_difference(runs: dict[str, Path], tmp_path: Path, edit: Any,
                                                        named: str, capsys: pytest.CaptureFixture[str]) -> None:
    other = copy_run_with(runs["rerun"], tmp_path / "other", edit)
    md = tmp_path / "summary.md"
    code = main(["compare", str(runs["retrieval-report"]), str(other), "--fail-on-regression", "--markdown", str(md)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and f"runs are not comparable: {named}:" in err
    assert "not comparable" in md.read_text() and named.replace("_", "\\_") in md.read_text()


def _scispacy(r: dict[str, Any]) -> None:
    """The same run as if scored with RadFM's scispaCy linker instead of the HPO index (only the config differs)."""
    umls = r["metric_configs"]["umls"]
    for key in ("index", "matcher", "concept_source"):
        umls.pop(key, None)
    umls.update(backend="scispacy", source_label="scispaCy UMLS", model="en_core_sci_lg", mode="linker")


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        (_scispacy, "umls source: HPO index (base) vs scispaCy UMLS (new)"),
        (lambda r: r["metric_configs"]["bertscore"].update(num_layers=4),
         "bertscore encoder: all-MiniLM-L6-v2, layer 6 (base) vs all-MiniLM-L6-v2, layer 4 (new)"),
    ],
    ids=["umls-source", "bertscore-layer"],
)
def test_runs_scored_with_another_source_are_refused_in_one_line_naming_it(
    runs: dict[str, Path], tmp_path: Path, edit: Any, line: str, capsys: pytest.CaptureFixture[str]
) -> None:
    other = copy_run_with(runs["rerun"], tmp_path / "other", edit)
    md, js = tmp_path / "summary.md", tmp_path / "cmp.json"
    code = main(["compare", str(runs["retrieval-report"]), str(other), "--markdown", str(md), "--json", str(js)])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err == f"radbench: error: runs are not comparable: {line}\n"
    # The source replaces the settings it decides: no separate backend/index/num_layers lines.
    assert json.loads(js.read_text())["incomparable"] == [line]
    assert "metric_configs" not in captured.out and line in captured.out
    assert "not comparable" in md.read_text()


def test_a_differing_rationale_concept_source_is_named_beside_its_other_settings() -> None:
    from radbench.metrics.rationale import Rationale
    from radbench.results import protocol_differences

    config = {"ids": ["diagnosis_hit"], **Rationale().config()}
    base = {"metric_configs": {"rationale": config}}
    new = json.loads(json.dumps(base))
    new["metric_configs"]["rationale"]["concepts"].update(backend="quickumls", source_label="QuickUMLS index")
    new["metric_configs"]["rationale"]["term_overlap"] = 0.7
    assert protocol_differences(base, new, {"rationale"})[-2:] == [
        "rationale source: HPO index (base) vs QuickUMLS index (new)",
        f"metric_configs.rationale.term_overlap: {config['term_overlap']} (base) vs 0.7 (new)",
    ]


def test_comparable_runs_label_each_metric_with_its_source(runs: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    md, js = tmp_path / "summary.md", tmp_path / "cmp.json"
    assert main(["compare", str(runs["retrieval-report"]), str(runs["rerun"]), "--markdown", str(md),
                 "--json", str(js)]) == 0
    text = md.read_text()
    assert "| UMLS-neg F1 · HPO index |" in text and "| BERTScore F1 · all-MiniLM-L6-v2, layer 6 |" in text
    assert "| bleu1 |" in text
    assert "- Scored with bertscore encoder: all-MiniLM-L6-v2, layer 6; umls source: HPO index" in text
    report = json.loads(js.read_text())
    schemas.validate(report, "compare")
    assert report["metric_labels"]["umls_precision"] == "UMLS P · HPO index"
    assert set(report["metric_labels"]) == {m["metric"] for m in report["metrics"]}
    assert "scored with bertscore encoder: all-MiniLM-L6-v2, layer 6; umls source: HPO index" in capsys.readouterr().out


def test_metric_config_of_an_uncompared_metric_does_not_block(runs: dict[str, Path], tmp_path: Path) -> None:
    other = copy_run_with(runs["rerun"], tmp_path / "other",
                          lambda r: r["metric_configs"]["rouge"].update(use_stemmer=False))
    assert main(["compare", str(runs["retrieval-report"]), str(other), "--metrics", "bleu4"]) == 0
    assert main(["compare", str(runs["retrieval-report"]), str(other)]) == 2


def test_model_differences_are_notes_not_blockers(runs: dict[str, Path]) -> None:
    result = compare.compare_paths(runs["majority-report"], runs["retrieval-report"])
    assert not result.incomparable
    assert any(n.startswith("model.name: majority (base) vs retrieval (new)") for n in result.notes)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["{a}", "{missing}"], "no results.json"),
        (["{a}", "{a}", "--metrics", "bleu9"], "unknown metric 'bleu9'"),
        (["{a}", "{a}", "--metrics", "accuracy"], "'accuracy' is not in the base run"),
        (["{a}", "{a}", "--min-effect", "-1"], "--min-effect"),
        (["{a}", "{noscores}"], "no scores.jsonl"),
        (["{a}", "{notresults}"], "not a radbench results file"),
    ],
)
def test_usage_errors_exit_2_with_one_line(runs: dict[str, Path], tmp_path: Path, args: list[str], needle: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    noscores = tmp_path / "noscores"
    shutil.copytree(runs["rerun"], noscores)
    (noscores / "scores.jsonl").unlink()
    notresults = tmp_path / "notresults"
    notresults.mkdir()
    (notresults / "results.json").write_text('{"hello": 1}')
    paths = {"a": runs["retrieval-report"], "missing": tmp_path / "nope", "noscores": noscores,
             "notresults": notresults}
    assert main(["compare", *[a.format(**paths) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("radbench: error:") and needle in err and err.count("\n") == 1


def test_bleu_difference_is_of_corpus_bleu(runs: dict[str, Path]) -> None:
    """The reported Δ is the difference of the corpus scores in results.json, not of sentence BLEU means."""
    base, new = compare.load_run(runs["majority-report"]), compare.load_run(runs["retrieval-report"])
    result = compare.compare(base, new, metrics=["bleu4"])
    expected = new.results["metrics"]["bleu4"]["value"] - base.results["metrics"]["bleu4"]["value"]
    assert result.metrics[0].diff == pytest.approx(expected, abs=1e-12)
    sentence_mean = (sum(r["bleu4"] for r in new.records) - sum(r["bleu4"] for r in base.records)) / len(base.records)
    assert abs(result.metrics[0].diff - sentence_mean) > 1e-6


def test_paired_resamples_are_clustered_by_patient(runs: dict[str, Path]) -> None:
    """VQA asks several questions per image: resamples draw whole clusters from both runs alike."""
    run_data = compare.load_run(runs["retrieval-vqa"])
    clusters = [r["cluster"] for r in run_data.records]
    assert len(set(clusters)) < len(clusters)
    result = compare.compare(run_data, run_data, metrics=["accuracy"])
    assert (result.shared, result.clusters) == (len(clusters), len(set(clusters)))
    draws = cluster_draws(clusters, 50, 0)
    for row in draws:
        picked = [clusters[i] for i in row if i >= 0]
        for cluster in set(picked):
            size = clusters.count(cluster)
            assert picked.count(cluster) % size == 0  # a cluster comes whole, never split


def test_only_shared_samples_are_paired(runs: dict[str, Path], tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    shutil.copytree(runs["rerun"], partial)
    lines = (partial / "scores.jsonl").read_text().splitlines()
    (partial / "scores.jsonl").write_text("\n".join(lines[:-4]) + "\n")
    result = compare.compare_paths(runs["retrieval-report"], partial)
    assert result.shared == len(lines) - 4
    assert any("4 samples only in base" in n for n in result.notes)


def test_markdown_escapes_untrusted_text(runs: dict[str, Path], tmp_path: Path) -> None:
    evil = copy_run_with(runs["rerun"], tmp_path / "evil",
                         lambda r: r["model"].update(name="<script>alert(1)</script> | `x` [l](javascript:x)"))
    text = compare.to_markdown(compare.compare_paths(runs["retrieval-report"], evil))
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "\\[l\\](javascript" in text and "\\| \\`x\\`" in text  # no link, no column break


def test_holm_adjustment() -> None:
    assert stats.holm([0.01, 0.04, None, 0.03]) == [0.03, 0.06, None, 0.06]
    assert stats.holm([0.5]) == [0.5]


def test_p_value_inverts_the_interval() -> None:
    assert stats.bootstrap_p_value(np.zeros(999)) == 1.0
    assert stats.bootstrap_p_value(np.full(999, -0.1)) == pytest.approx(2 / 1000)
    shifted = np.linspace(-1, 1, 1001) + 0.97  # 2.0% of resamples at or below zero
    assert stats.bootstrap_p_value(shifted) < 0.05 < stats.bootstrap_p_value(shifted - 0.02)



def test_verdict_interval_is_holm_adjusted_and_never_disagrees(runs: dict[str, Path], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    base, new = compare.load_run(runs["majority-report"]), compare.load_run(runs["retrieval-report"])
    result = compare.compare(base, new)
    assert len(result.metrics) > 5
    for m in result.metrics:
        excludes = m.adjusted_ci_low is not None and (m.adjusted_ci_low > 0 or m.adjusted_ci_high < 0)
        assert excludes == (m.p_adjusted < 0.05), m
        # The adjusted interval is at least as wide as the unadjusted one.
        assert m.adjusted_ci_low <= m.ci_low + 1e-12 and m.adjusted_ci_high >= m.ci_high - 1e-12
    monkeypatch.setenv("COLUMNS", "200")
    compare.print_table(result)
    out = capsys.readouterr().out
    assert "CI of Δ (Holm-adj.)" in out and "unadj. 95% CI" in out and "unadj. p" in out
    md = compare.to_markdown(result)
    assert "CI of Δ (Holm-adjusted)" in md and "unadjusted 95% CI" in md


@pytest.mark.parametrize("seed", range(40))
def test_holm_interval_matches_the_adjusted_p_value(seed: int) -> None:
    rng = np.random.default_rng(seed)
    samples = rng.normal(rng.uniform(-0.3, 0.3), 0.1, size=int(rng.integers(100, 2000)))
    p = stats.bootstrap_p_value(samples)
    for family in (1, 2, 5, 8):
        p_adjusted = min(1.0, family * p)
        low, high = compare._holm_interval(samples, p / p_adjusted, 0.05)
        excludes = low is not None and (low > 0 or high < 0)
        assert excludes == (p_adjusted < 0.05), (family, p, low, high)


def test_an_unadjusted_interval_that_excludes_zero_beside_no_change_is_explained(runs: dict[str, Path]) -> None:
    result = compare.compare_paths(runs["majority-report"], runs["retrieval-report"])
    explained = {n.split(":")[0] for n in result.notes if "excludes 0, but adjusted" in n}
    expected = {m.metric for m in result.metrics
                if (m.ci_low > 0 or m.ci_high < 0) and m.p_adjusted >= 0.05}
    assert explained == expected


def test_a_rising_error_rate_is_a_regression_not_an_improvement(capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    n = 60
    base = [{"id": str(i), "parse_failure_rate": 0.0, "accuracy": 1.0} for i in range(n)]
    new = [{"id": str(i), "parse_failure_rate": float(i % 2), "accuracy": 1.0 - (i % 2)} for i in range(n)]
    diffs = {m.metric: m for m in compare.paired_bootstrap(base, new, ["parse_failure_rate", "accuracy"],
                                                            [str(i) for i in range(n)])}
    rate = diffs["parse_failure_rate"]
    assert rate.diff == pytest.approx(0.5) and rate.status == "regression" and rate.lower_is_better
    assert compare.verdict(rate) == "▲ regression" and compare.metric_label(rate) == "parse_failure_rate ↓"
    assert diffs["accuracy"].status == "regression" and compare.verdict(diffs["accuracy"]) == "▼ regression"
    back = {m.metric: m for m in compare.paired_bootstrap(new, base, ["parse_failure_rate"], [str(i) for i in range(n)])}
    assert back["parse_failure_rate"].status == "improvement"
    assert compare.verdict(back["parse_failure_rate"]) == "▼ improvement"


def test_few_clusters_are_noted_and_narrow_terminal_gets_one_block_per_metric(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    def one_patient(path: Path) -> Path:
        out = tmp_path / path.name
        shutil.copytree(path, out)
        records = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
        (out / "scores.jsonl").write_text("".join(json.dumps({**r, "cluster": "p1"}) + "\n" for r in records))
        return out

    result = compare.compare_paths(one_patient(runs["majority-diagnosis"]), one_patient(runs["retrieval-diagnosis"]))
    assert result.clusters == 1
    assert any(n.startswith("warning: 95% CIs rest on 1 paired cluster") for n in result.notes)
    monkeypatch.setenv("COLUMNS", "80")
    compare.print_table(compare.compare_paths(runs["majority-report"], runs["retrieval-report"]))
    out = capsys.readouterr().out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "Δ [CI, Holm-adj.]" in out and "unadj. 95% CI, p" in out
    assert not any("…" in line for line in out.splitlines() if "│" in line)  # no number is cut
