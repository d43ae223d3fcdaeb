"""What a user feels: whole-process wall times, each command in a fresh process.

(7) ``radbench score`` with BLEU-1..4 + ROUGE-1/2/L on 10,000 report pairs vs a plain script calling
    pycocoevalcap's ``Bleu(4)`` and rouge-score directly on the same pairs (``direct_metrics.py``).
    radbench starts with a cold metric cache every time. Target <= 0.6.
(8) The default report suite (BLEU, ROUGE, BERTScore, UMLS) through ``radbench score`` on a 44-report
    RadFM-format CSV vs the same metrics called directly in one process (bert_score on the same
    encoder, pycocoevalcap, rouge-score, QuickUMLS on the same HPO index). The HPO index is built
    once beforehand (both sides use it), metric caches are cold. Target <= 2.
(9) Start-up, in seconds: ``radbench run`` of the majority baseline on the demo VQA task and
    ``radbench score`` on 10 pairs (BLEU+ROUGE) each <= 1.5 s; ``radbench --help`` and
    ``radbench list models`` < 0.15 s.

Each figure is the median of several runs, the two sides interleaved so that load on a shared
machine hits both alike. Run: ``.venv/bin/python benchmarks/bench_process.py [--runs 5]``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_metrics import report_pairs  # noqa: E402
from benchmarks.common import report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
TEXT = "bleu1,bleu2,bleu3,bleu4,rouge1,rouge2,rougeL"
# As a user's shell runs the commands: offline, and with Python's bytecode cache on (a shell that sets
# PYTHONDONTWRITEBYTECODE recompiles radbench at every start). The untimed first pass writes it.
ENV = {**{k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def radbench_cmd() -> list[str]:
    """The installed console script, as a user types it (``python -m radbench`` where there is none)."""
    script = Path(sys.executable).parent / "radbench"
    return [str(script)] if script.exists() else [sys.executable, "-m", "radbench"]


Side = tuple[Callable[[], None], Callable[[], list[str]], Callable[[], dict[str, str]]]


def median_walls(runs: int, sides: Sequence[Side]) -> list[float]:
    """Median wall time of each side's command; ``prepare`` runs untimed before each, sides interleaved."""
    times: list[list[float]] = [[] for _ in sides]
    for _ in range(runs):
        for i, (prepare, argv, env) in enumerate(sides):
            prepare()
            args, environment = argv(), env()
            t0 = time.perf_counter()
            subprocess.run(args, env=environment, check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def write_jsonl(path: Path, preds: Sequence[str], refs: Sequence[str]) -> Path:
    path.write_text("".join(json.dumps({"id": str(i), "prediction": p, "reference": r}) + "\n"
                            for i, (p, r) in enumerate(zip(preds, refs))), encoding="utf-8")
    return path


def text_process(n: int, runs: int, tmp: Path) -> None:
    refs, preds, _ = report_pairs(n, seed=7)
    data = write_jsonl(tmp / "text.jsonl", preds, refs)
    state = {"k": 0}

    def fresh() -> None:
        state["k"] += 1

    ours = (fresh, lambda: [*radbench_cmd(), "score", str(data), "--task", "report", "--metrics", TEXT,
                            "--output", str(tmp / f"text-out-{state['k']}")],
            lambda: {**ENV, "RADBENCH_CACHE": str(tmp / f"text-cache-{state['k']}")})
    direct = (lambda: None, lambda: [sys.executable, str(HERE / "direct_metrics.py"), str(data)], lambda: ENV)
    t_ours, t_direct = median_walls(runs, [ours, direct])
    _check_equal(tmp / f"text-out-{state['k']}", [sys.executable, str(HERE / "direct_metrics.py"), str(data)])
    ratio = t_ours / t_direct
    report("(7) whole process: radbench score BLEU+ROUGE / pycocoevalcap+rouge_score script", ratio, "<= 0.6",
           ratio <= 0.6, f"{n} pairs, fresh processes, median of {runs}: radbench {t_ours:.2f}s (cold metric cache), "
           f"direct script {t_direct:.2f}s; values equal")


def _check_equal(run_dir: Path, direct_argv: list[str], keys: Sequence[str] = TEXT.split(",")) -> None:
    """The compared numbers must be the same numbers, or the timing means nothing."""
    ours = json.loads((run_dir / "results.json").read_text())["metrics"]
    theirs = json.loads(subprocess.run(direct_argv, env=ENV, check=True, capture_output=True, text=True,
                                       cwd=ROOT).stdout)
    for key in keys:
        if abs(ours[key]["value"] - theirs[key]) > 1e-9:
            raise SystemExit(f"{key}: radbench {ours[key]['value']} != direct {theirs[key]}")


def radfm_csv(path: Path, preds: Sequence[str], refs: Sequence[str]) -> Path:
    """RadFM's ``src/test.py`` output layout: each cell a one-element Python list literal."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["Question", "Ground Truth", "Pred", "belong_to"])
        for p, r in zip(preds, refs):
            writer.writerow([repr(["Write the findings of this chest X-ray."]), repr([r]), repr([p]),
                             repr(["mimic-cxr"])])
    return path


def suite_process(n: int, runs: int, tmp: Path) -> None:
    from radbench.metrics.bertscore import default_encoder_dir

    refs, preds, _ = report_pairs(n, seed=13)
    data = radfm_csv(tmp / "radfm.csv", preds, refs)
    jsonl = write_jsonl(tmp / "suite.jsonl", [p or "" for p in preds], refs)
    index_cache = tmp / "index-cache"
    # The direct side runs QuickUMLS, so its database is built over the very HPO rows radbench matches.
    subprocess.run([sys.executable, "-c", "from radbench.metrics.umls.hpo import build_quickumls_db as b, "
                    "ensure_hpo_index as e; print(b(e()))"], env={**ENV, "RADBENCH_CACHE": str(index_cache)},
                   check=True, cwd=ROOT, capture_output=True)
    index = next(index_cache.rglob("quickumls"))
    state = {"k": 0}

    def fresh() -> None:
        state["k"] += 1
        shutil.copytree(index_cache, tmp / f"suite-cache-{state['k']}")

    ours = (fresh, lambda: [*radbench_cmd(), "score", str(data), "--task", "report",
                            "--output", str(tmp / f"suite-out-{state['k']}")],
            lambda: {**ENV, "RADBENCH_CACHE": str(tmp / f"suite-cache-{state['k']}")})
    direct = (lambda: None, lambda: [sys.executable, str(HERE / "direct_metrics.py"), str(jsonl), "--suite",
                                     "--umls-index", str(index), "--encoder", str(default_encoder_dir())],
              lambda: ENV)
    t_ours, t_direct = median_walls(runs, [ours, direct])
    ratio = t_ours / t_direct
    report("(8) whole process: default report suite, radbench score / metrics called directly", ratio, "<= 2",
           ratio <= 2, f"{n} reports (RadFM CSV), fresh processes, median of {runs}: radbench {t_ours:.2f}s "
           f"(cold metric caches, bootstrap CIs), direct {t_direct:.2f}s (bert_score, pycocoevalcap, rouge_score, "
           "QuickUMLS on the same HPO index)")


def startup(runs: int, tmp: Path) -> None:
    refs, preds, _ = report_pairs(10, seed=3)
    data = write_jsonl(tmp / "ten.jsonl", preds, refs)
    state = {"k": 0}

    def fresh() -> None:
        state["k"] += 1

    cache_env = lambda: {**ENV, "RADBENCH_CACHE": str(tmp / "startup-cache")}  # noqa: E731
    sides = {
        "run": (fresh, lambda: [*radbench_cmd(), "run", "--model", "majority", "--task", "vqa", "--dataset", "demo",
                                "--quiet", "--output", str(tmp / f"run-{state['k']}")], cache_env),
        "score": (fresh, lambda: [*radbench_cmd(), "score", str(data), "--task", "report", "--metrics", TEXT,
                                  "--output", str(tmp / f"score-{state['k']}")], cache_env),
        "help": (lambda: None, lambda: [*radbench_cmd(), "--help"], lambda: ENV),
        "list": (lambda: None, lambda: [*radbench_cmd(), "list", "models"], lambda: ENV),
    }
    # One untimed pass renders the demo images into the cache, as the first `make demo` does. The
    # sub-second commands are timed among themselves: right after a heavy process a light one reads
    # slow on a shared machine, whatever it does.
    median_walls(1, list(sides.values()))
    walls = {}
    for group in (("run", "score"), ("help", "list")):
        walls.update(zip(group, median_walls(runs, [sides[k] for k in group])))
    limits = {"run": 1.5, "score": 1.5, "help": 0.15, "list": 0.15}
    labels = {"run": "(9a) start-up: radbench run, majority baseline on the demo VQA task (s)",
              "score": "(9b) start-up: radbench score on 10 pairs, BLEU+ROUGE (s)",
              "help": "(9c) start-up: radbench --help (s)",
              "list": "(9d) start-up: radbench list models (s)"}
    for key, wall in walls.items():
        op = "<=" if key in ("run", "score") else "<"
        met = wall <= limits[key] if op == "<=" else wall < limits[key]
        report(labels[key], wall, f"{op} {limits[key]} s", met,
               f"whole process, median of {runs} interleaved runs: {wall:.3f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--suite-reports", type=int, default=44)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--only", choices=("text", "suite", "startup"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        if args.only in (None, "startup"):
            startup(max(args.runs, 7), tmp)
        if args.only in (None, "text"):
            text_process(args.pairs, args.runs, tmp)
        if args.only in (None, "suite"):
            suite_process(args.suite_reports, max(3, args.runs - 2), tmp)


if __name__ == "__main__":
    main()
