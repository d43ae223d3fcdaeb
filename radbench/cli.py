"""The ``radbench`` command line: thin argument parsing over the runner, scorer and registry.

Imports are deferred into each command so ``radbench --help`` and ``radbench list`` stay fast and
never import torch. A :class:`UsageError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from radbench import __version__, registry
from radbench import cli_checks
from radbench.errors import UsageError
from radbench.options import parse_kv
from radbench.store import atomic_write_text

METRIC_ARGS_HELP = ("metric settings group.key=value,... (e.g. umls.backend=quickumls,umls.index=DIR or "
                    "bertscore.model=DIR); see docs/metrics.md")
TABLE_METRICS = ("bleu1", "bleu4", "rougeL", "bertscore_f1", "umls_f1", "accuracy")
# Rationale runs get a second table: text overlap alone misses a wrong diagnosis, side or "no".
RATIONALE_TABLE_METRICS = ("diagnosis_hit", "diagnosis_hit_any", "feature_recall", "feature_precision",
                           "laterality_error_rate", "negation_error_rate")


def _parse_gen_kwargs(text: str | None) -> dict[str, Any]:
    """``k=v`` pairs whose values are JSON when they parse as JSON (numbers, booleans), else strings."""
    out: dict[str, Any] = {}
    for key, value in parse_kv(text, "--gen-kwargs").items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name, or package.module:Class")
    p.add_argument("--task", required=True,
                   help="vqa, report, rationale or diagnosis (radbench list tasks); several as vqa,report (one "
                        "run directory each under --output, plus summary.json), or all: every task of --dataset")
    p.add_argument("--dataset", help="dataset name (default: the task's default dataset)")
    p.add_argument("--data-root", help="folder holding the dataset's files and images")
    p.add_argument("--model-args", help="k=v,k2=v2 passed to the adapter (e.g. checkpoint=PATH)")
    p.add_argument("--gen-kwargs", help="decoding overrides k=v,k2=v2 (e.g. max_new_tokens=64)")
    p.add_argument("--shots", type=int, default=0, help="few-shot exemplars per sample (default 0)")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument("--batch-size", type=int, help="cap on requests per generate() call")
    p.add_argument("--seed", type=int, default=0, help="seed for exemplar sampling and the bootstrap")
    p.add_argument("--metrics", help="comma-separated metric ids (default: the task's)")
    p.add_argument("--metric-args", help=METRIC_ARGS_HELP)
    p.add_argument("--output", required=True, type=Path, help="run directory; re-running resumes")
    p.add_argument("--quiet", action="store_true", help="no progress output (for CI)")
    _add_data_args(p)


def _add_data_args(p: argparse.ArgumentParser) -> None:
    """How the dataset is read; shared by run and validate, so validate checks what run will read."""
    p.add_argument("--image-root", action="append", default=[], metavar="OLD=NEW",
                   help="rewrite image paths starting with OLD (e.g. the authors' absolute prefix) to NEW; repeatable")
    p.add_argument("--prompts", metavar="DIR",
                   help="folder with RadFM's prompt files (faithful prompts), or 'radbench' for radbench's own "
                        "templates (default: RadFM's files if found under --data-root, else radbench's)")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first bad row or image with one line naming the file and row "
                        "(default: record it as a failed sample and count it)")
    p.add_argument("--allow-outside-root", action="store_true",
                   help="let image paths resolve outside the data root (refused by default)")
    p.add_argument("--window", help="intensity window for every image: lung, mediastinum, soft-tissue, liver, bone, "
                                    "brain, subdural, stroke, dicom (the file's own) or CENTER,WIDTH")
    p.add_argument("--max-images", type=int, metavar="N",
                   help="keep at most N images of a sample, a subset drawn from --seed and kept in file order "
                        "(default: 8 for RadFM-format datasets, as RadFM's loader; none otherwise; 0: no cap)")


def _data_args(args: argparse.Namespace) -> dict[str, Any]:
    """The data options of a parsed command line, as RunConfig keyword arguments."""
    return {"image_roots": tuple(args.image_root), "prompts": args.prompts, "strict": args.strict,
            "allow_outside_root": args.allow_outside_root, "window": args.window, "max_images": args.max_images}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radbench", description="Evaluate radiology foundation models.")
    parser.add_argument("--version", action="version", version=f"radbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="generate, score and write results for one model on one task")
    _add_run_args(p_run)
    p_run.add_argument("--launcher", choices=("none", "torchrun"), default="none",
                       help="torchrun: start --nproc data-parallel ranks on this node (same as torchrun -m radbench run)")
    p_run.add_argument("--nproc", type=int, default=1, help="ranks for --launcher torchrun")

    p_val = sub.add_parser("validate", help="readiness report of a dataset (files, rows, images); exit 1 if not ready")
    p_val.add_argument("--task", required=True, help="vqa, report, rationale or diagnosis")
    p_val.add_argument("--dataset", help="dataset name or folder (default: the task's default dataset)")
    p_val.add_argument("--data-root", help="folder holding the dataset's files and images")
    p_val.add_argument("--split", default="test", choices=("test", "train"), help="split to check (default test)")
    p_val.add_argument("--seed", type=int, default=0, help="seed for faithful prompt choices (as in run)")
    p_val.add_argument("--quick", action="store_true", help="check that images exist, without reading their pixels")
    p_val.add_argument("--json", type=Path, help="also write the full report as JSON")
    _add_data_args(p_val)

    p_list = sub.add_parser("list", help="list registered models, tasks, datasets or metrics")
    p_list.add_argument("kind", choices=registry.KINDS)

    p_score = sub.add_parser("score", help="score predictions made elsewhere (JSONL or RadFM's CSV)")
    p_score.add_argument("predictions", type=Path)
    p_score.add_argument("--task", required=True)
    p_score.add_argument("--metrics", help="comma-separated metric ids (default: the task's)")
    p_score.add_argument("--metric-args", help=METRIC_ARGS_HELP)
    p_score.add_argument("--seed", type=int, default=0)
    p_score.add_argument("--output", required=True, type=Path)
    p_score.add_argument("--name", help="model name recorded for these predictions (default: external)")

    p_demo = sub.add_parser("demo", help="run both baselines on every task of the embedded demo dataset")
    p_demo.add_argument("--output", type=Path, default=Path("runs/demo"))
    p_demo.add_argument("--quiet", action="store_true")

    p_cmp = sub.add_parser("compare",
                           help="paired bootstrap of NEW against BASE; exit 1 on a regression, 2 if incomparable")
    p_cmp.add_argument("base", type=Path, help="run directory or results.json")
    p_cmp.add_argument("new", type=Path, help="run directory or results.json")
    p_cmp.add_argument("--metrics", help="comma-separated metric ids (default: every metric both runs have)")
    p_cmp.add_argument("--min-effect", type=float, default=0.0,
                       help="a significant drop is a regression only if larger than this (metric units, e.g. 0.01)")
    p_cmp.add_argument("--fail-on-regression", action="store_true", help="exit 1 when any metric regressed")
    p_cmp.add_argument("--markdown", type=Path, help="also write a markdown summary (PR comment, CI step summary)")
    p_cmp.add_argument("--json", type=Path, help="also write the comparison as JSON")
    p_cmp.add_argument("--iterations", type=int, default=1000, help="bootstrap resamples (default 1000)")
    p_cmp.add_argument("--seed", type=int, default=0)

    p_sweep = sub.add_parser("sweep", help="run every checkpoint matching a glob and show metric trends with CIs")
    _add_run_args(p_sweep)
    p_sweep.add_argument("--checkpoints", required=True, help="glob of checkpoint paths, quoted (e.g. 'ckpt/step-*')")
    p_sweep.add_argument("--checkpoint-arg", default="checkpoint", help="--model-args key that takes the path")
    p_sweep.add_argument("--baseline", type=Path, help="checkpoint or run directory to compare with (default: first)")
    p_sweep.add_argument("--min-effect", type=float, default=0.0, help="as for compare")
    p_sweep.add_argument("--iterations", type=int, default=1000, help="bootstrap resamples (default 1000)")

    p_lb = sub.add_parser("leaderboard", help="build leaderboard.json from runs, or render it as a static HTML page")
    lb_sub = p_lb.add_subparsers(dest="leaderboard_command", required=True)
    p_build = lb_sub.add_parser("build", help="rank comparable runs; refuse to mix incomparable ones")
    p_build.add_argument("runs", type=Path, nargs="+", help="run directories, results files, or folders of runs")
    p_build.add_argument("--output", type=Path, required=True)
    p_build.add_argument("--allow-mixed", action="store_true", help="rank incomparable runs in separate groups")
    p_build.add_argument("--title", help="page title (default: radbench leaderboard)")
    p_html = lb_sub.add_parser("html", help="one self-contained HTML page (no network) from leaderboard.json")
    p_html.add_argument("leaderboard", type=Path)
    p_html.add_argument("--output", type=Path, required=True)
    return parser


def cmd_list(kind: str) -> int:
    names = registry.names(kind)
    if not sys.stdout.isatty():
        print("\n".join(names))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"radbench {kind}")
    table.add_column("name")
    table.add_column("details")
    entries = registry.entries(kind)
    for name in names:
        if kind == "metrics":
            detail = f"computed by '{registry.metric_group(name)}'"
        elif kind in ("tasks", "datasets"):
            obj = entries[name].load()
            tasks = f" [tasks: {', '.join(obj.tasks)}]" if kind == "datasets" else ""
            detail = f"{obj.description}{tasks}"
        else:
            entry = entries[name]
            detail = entry.target if entry.source == "builtin" else f"{entry.target} (from {entry.source})"
        table.add_row(name, detail)
    Console().print(table)
    return 0


def print_results_table(rows: Sequence[tuple[str, str, dict[str, Any]]], title: str,
                        columns: Sequence[str] = TABLE_METRICS) -> None:
    """One row per (model, task) with each metric as value [95% CI] (radbench.tables fits it to the
    terminal); rationale metrics in a second table; one legend for both."""
    from radbench.tables import console, print_footer, print_results

    out = console()
    print_results(rows, title, columns, out, footer=False)
    rationale = [r for r in rows if any(m in r[2]["metrics"] for m in RATIONALE_TABLE_METRICS)]
    if columns is TABLE_METRICS and rationale:
        print_results(rationale, f"{title}: rationale", RATIONALE_TABLE_METRICS, out, footer=False)
    print_footer(out, [r[2] for r in rows])


def print_metric_list(res: dict[str, Any], title: str) -> None:
    """Every metric of one run, one per line, then the legend and any warning."""
    from radbench.tables import print_metric_list as render

    render(res, title)


def metric_settings(text: str | None) -> dict[str, dict[str, str]]:
    """Metric settings by group: ``RADBENCH_METRIC_ARGS``, then ``--metric-args`` on top of it.

    The one place that reads the environment variable; the settings then travel explicitly to every
    metric built (a torchrun rank re-runs this command line, so it collects the same settings). Each
    setting that changes numbers is recorded in the metric's configuration in ``results.json``.
    """
    from radbench.metrics.options import ENV, parse_metric_args

    merged = parse_metric_args(os.environ.get(ENV, ""))
    for group, values in parse_metric_args(text or "", "--metric-args").items():
        merged.setdefault(group, {}).update(values)
    return merged


def _without_launcher(argv: Sequence[str]) -> list[str]:
    """The command line minus ``--launcher``/``--nproc``, for the ranks torchrun starts."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--launcher", "--nproc"):
            skip = True
        elif not arg.startswith(("--launcher=", "--nproc=")):
            out.append(arg)
    return out


def cmd_run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from radbench import multitask
    from radbench.runner import RunConfig, run

    settings = metric_settings(args.metric_args)  # a malformed entry is a one-line error before anything runs
    if args.launcher == "torchrun":
        import subprocess

        from radbench.distributed import torchrun_command

        if args.nproc < 1:
            raise UsageError(f"--nproc must be >= 1, got {args.nproc}")
        return subprocess.run(torchrun_command(args.nproc, _without_launcher(argv))).returncode
    config = RunConfig(
        model=args.model, task=args.task, output=args.output, dataset=args.dataset, data_root=args.data_root,
        model_args=args.model_args, gen_kwargs=_parse_gen_kwargs(args.gen_kwargs), shots=args.shots,
        limit=args.limit, batch_size=args.batch_size, seed=args.seed, metrics=args.metrics, quiet=args.quiet,
        metric_args=settings, **_data_args(args),
    )
    tasks = multitask.task_list(args.task, args.dataset)
    if tasks is not None:  # --task a,b or all: one run directory per task under --output, and a summary
        done = multitask.run_tasks(config, tasks, run)
        if done and not args.quiet:
            print_results_table([(args.model, task, res) for task, res in done],
                                f"radbench: {args.model} ({args.output / multitask.SUMMARY})")
        return 0
    res = run(config)
    if res is not None and not args.quiet:  # only rank 0 of a distributed run has results
        print_metric_list(res, f"radbench: {args.model} on {args.task} ({args.output})")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from radbench.runner import load_task
    from radbench.tasks.base import DataOptions

    task = load_task(args.task)
    name = args.dataset or task.default_dataset
    dataset = registry.get("datasets", name)()
    if task.name not in dataset.tasks:
        raise UsageError(f"dataset {name!r} has no task {task.name!r}; it covers {', '.join(dataset.tasks)}")
    options = DataOptions(args.data_root, DataOptions.parse_image_roots(args.image_root), args.prompts, args.strict,
                          args.allow_outside_root, args.window, args.seed, args.max_images)
    report = registry.service("validate")(dataset, task.name, options, args.split, read_pixels=not args.quick)
    print(registry.service("validate.render")(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return 0 if report.ready else 1


def cmd_score(args: argparse.Namespace) -> int:
    from radbench.identity import check_output
    from radbench.rescore import score_file

    check_output(args.output)
    res = score_file(args.predictions, args.task, args.metrics, args.output, args.seed,
                     metric_settings(args.metric_args), name=args.name)
    print_metric_list(res, f"radbench scores of {args.predictions}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from radbench.runner import RunConfig, run

    rows = []
    settings = metric_settings(None)
    for task in ("vqa", "report", "rationale", "diagnosis"):
        for model in ("majority", "retrieval"):
            res = run(RunConfig(model=model, task=task, dataset="demo", output=args.output / f"{model}-{task}",
                                quiet=args.quiet, metric_args=settings))
            rows.append((model, task, res))
    print_results_table(rows, f"radbench demo (DEMO DATA, NOT A BENCHMARK) -> {args.output}")
    from radbench import board as boards

    board = args.output / "leaderboard.json"
    boards.build([args.output / f"{model}-{task}" for model, task, _ in rows], board,
                 title="radbench demo leaderboard (DEMO DATA, NOT A BENCHMARK)")
    boards.write_html(board, args.output / "index.html")
    print(f"leaderboard: {board} and {args.output / 'index.html'}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from radbench import compare

    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    result = compare.compare_paths(args.base, args.new, metrics=metrics, min_effect=args.min_effect,
                                   iterations=args.iterations, seed=args.seed)
    compare.print_table(result)
    if args.markdown:
        atomic_write_text(args.markdown, compare.to_markdown(result))  # never a 0-byte file
    if args.json:
        compare.write_json(args.json, result)
    code = result.exit_code(args.fail_on_regression)
    if code == 2:
        print(f"radbench: error: runs are not comparable: {result.incomparable[0]}", file=sys.stderr)
    return code


def cmd_sweep(args: argparse.Namespace) -> int:
    from radbench.runner import RunConfig
    from radbench.sweep import print_trend, sweep

    config = RunConfig(
        model=args.model, task=args.task, output=args.output, dataset=args.dataset, data_root=args.data_root,
        model_args=args.model_args, gen_kwargs=_parse_gen_kwargs(args.gen_kwargs), shots=args.shots,
        limit=args.limit, batch_size=args.batch_size, seed=args.seed, metrics=args.metrics, quiet=args.quiet,
        metric_args=metric_settings(args.metric_args), **_data_args(args),
    )
    trend = sweep(config, args.checkpoints, args.checkpoint_arg, args.baseline, args.min_effect, args.iterations)
    print_trend(trend)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from radbench import board as boards

    if args.leaderboard_command == "build":
        board = boards.build(args.runs, args.output, allow_mixed=args.allow_mixed, title=args.title)
        entries = sum(len(g["entries"]) for g in board["groups"])
        print(f"{args.output}: {entries} runs in {len(board['groups'])} groups")
    else:
        boards.write_html(args.leaderboard, args.output)
        print(f"{args.output}: written")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):  # a path with non-UTF-8 bytes prints escaped, never raises
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        cli_checks.check(args)  # numbers in range and the output writable, before any model loads
        if args.command == "list":
            return cmd_list(args.kind)
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "score":
            return cmd_score(args)
        if args.command == "validate":
            return cmd_validate(args)
        if args.command == "demo":
            return cmd_demo(args)
        if args.command == "compare":
            return cmd_compare(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "leaderboard":
            return cmd_leaderboard(args)
    except UsageError as exc:
        # One line, whatever the message quotes from the user's files (a CSV header or a key with a newline).
        message = str(exc).replace("\r", "\\r").replace("\n", "\\n")
        print(f"radbench: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("radbench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``radbench list models | head -1``): stop quietly, as Unix tools do.
        # stdout now points at /dev/null so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    raise AssertionError(f"unhandled command {args.command!r}")
