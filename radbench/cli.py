"""The ``radbench`` command line: thin argument parsing over the runner, scorer and registry.

Imports are deferred into each command so ``radbench --help`` and ``radbench list`` stay fast and
never import torch. A :class:`UsageError` becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from radbench import __version__, registry
from radbench.errors import UsageError

TABLE_METRICS = ("bleu1", "bleu4", "rougeL", "accuracy")


def _parse_gen_kwargs(text: str | None) -> dict[str, Any]:
    """``k=v`` pairs whose values are JSON when they parse as JSON (numbers, booleans), else strings."""
    from radbench.models.base import parse_model_args

    out: dict[str, Any] = {}
    for key, value in parse_model_args(text).items():
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="registered model name, or package.module:Class")
    p.add_argument("--task", required=True, help="vqa, report, rationale or diagnosis (radbench list tasks)")
    p.add_argument("--dataset", help="dataset name (default: the task's default dataset)")
    p.add_argument("--data-root", help="folder holding the dataset's files and images")
    p.add_argument("--model-args", help="k=v,k2=v2 passed to the adapter (e.g. checkpoint=PATH)")
    p.add_argument("--gen-kwargs", help="decoding overrides k=v,k2=v2 (e.g. max_new_tokens=64)")
    p.add_argument("--shots", type=int, default=0, help="few-shot exemplars per sample (default 0)")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples")
    p.add_argument("--batch-size", type=int, help="cap on requests per generate() call")
    p.add_argument("--seed", type=int, default=0, help="seed for exemplar sampling and the bootstrap")
    p.add_argument("--metrics", help="comma-separated metric ids (default: the task's)")
    p.add_argument("--output", required=True, type=Path, help="run directory; re-running resumes")
    p.add_argument("--quiet", action="store_true", help="no progress output (for CI)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="radbench", description="Evaluate radiology foundation models.")
    parser.add_argument("--version", action="version", version=f"radbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", help="generate, score and write results for one model on one task")
    _add_run_args(p_run)
    p_run.add_argument("--launcher", choices=("none", "torchrun"), default="none",
                       help="torchrun: start --nproc data-parallel ranks on this node (same as torchrun -m radbench run)")
    p_run.add_argument("--nproc", type=int, default=1, help="ranks for --launcher torchrun")

    p_list = sub.add_parser("list", help="list registered models, tasks, datasets or metrics")
    p_list.add_argument("kind", choices=registry.KINDS)

    p_score = sub.add_parser("score", help="score predictions made elsewhere (JSONL or RadFM's CSV)")
    p_score.add_argument("predictions", type=Path)
    p_score.add_argument("--task", required=True)
    p_score.add_argument("--metrics", help="comma-separated metric ids (default: the task's)")
    p_score.add_argument("--seed", type=int, default=0)
    p_score.add_argument("--output", required=True, type=Path)

    p_demo = sub.add_parser("demo", help="run both baselines on every task of the embedded demo dataset")
    p_demo.add_argument("--output", type=Path, default=Path("runs/demo"))
    p_demo.add_argument("--quiet", action="store_true")
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


def print_results_table(rows: Sequence[tuple[str, str, dict[str, Any]]], title: str) -> None:
    """One row per (model, task): each metric as value [95% CI]."""
    from rich.console import Console
    from rich.table import Table

    metric_ids = [m for m in TABLE_METRICS if any(m in r[2]["metrics"] for r in rows)]
    table = Table(title=title)
    for col in ("model", "task", "n", "failed", *metric_ids):
        table.add_column(col, justify="left" if col in ("model", "task") else "right")
    for model, task, res in rows:
        cells = []
        for metric_id in metric_ids:
            m = res["metrics"].get(metric_id)
            if m is None or m["value"] is None:
                cells.append("-")
            else:
                cells.append(f"{m['value']:.3f} [{m['ci_low']:.3f}, {m['ci_high']:.3f}]")
        table.add_row(model, task, str(res["n_samples"]), str(res["failures"]["count"]), *cells)
    Console(width=max(120, 30 + 26 * len(metric_ids))).print(table)


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
    from radbench.runner import RunConfig, run

    if args.launcher == "torchrun":
        import subprocess

        from radbench.distributed import torchrun_command

        if args.nproc < 1:
            raise UsageError(f"--nproc must be >= 1, got {args.nproc}")
        return subprocess.run(torchrun_command(args.nproc, _without_launcher(argv))).returncode
    res = run(
        RunConfig(
            model=args.model, task=args.task, output=args.output, dataset=args.dataset, data_root=args.data_root,
            model_args=args.model_args, gen_kwargs=_parse_gen_kwargs(args.gen_kwargs), shots=args.shots,
            limit=args.limit, batch_size=args.batch_size, seed=args.seed, metrics=args.metrics, quiet=args.quiet,
        )
    )
    if res is not None and not args.quiet:  # only rank 0 of a distributed run has results
        print_results_table([(args.model, args.task, res)], f"radbench results ({args.output})")
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from radbench.rescore import score_file

    res = score_file(args.predictions, args.task, args.metrics, args.output, args.seed)
    print_results_table([("external", args.task, res)], f"radbench scores of {args.predictions}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from radbench.runner import RunConfig, run

    rows = []
    for task in ("vqa", "report", "rationale", "diagnosis"):
        for model in ("majority", "retrieval"):
            res = run(RunConfig(model=model, task=task, dataset="demo", output=args.output / f"{model}-{task}",
                                quiet=args.quiet))
            rows.append((model, task, res))
    print_results_table(rows, f"radbench demo (DEMO DATA, NOT A BENCHMARK) -> {args.output}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return cmd_list(args.kind)
        if args.command == "run":
            return cmd_run(args, argv)
        if args.command == "score":
            return cmd_score(args)
        if args.command == "demo":
            return cmd_demo(args)
    except UsageError as exc:
        print(f"radbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("radbench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")
