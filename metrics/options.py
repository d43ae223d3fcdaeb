"""Metric arguments: choosing a BERTScore encoder or a UMLS backend without writing code.

The scoring core builds each metric with no arguments, so user choices come from one environment
variable that ``radbench run`` and ``radbench score`` both see::

    RADBENCH_METRIC_ARGS="bertscore.model=/models/roberta,bertscore.num_layers=17,umls.backend=quickumls,umls.index=/data/qumls"

Entries are ``group.key=value`` separated by commas. Keyword arguments given to a metric's
constructor (the Python API) override the environment. Every value that changes numbers ends up in
the metric's ``config()``, hence in ``results.json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from radbench.errors import UsageError
from radbench.options import parse_bool, parse_kv

__all__ = ["ENV", "parse_bool", "parse_metric_args", "resolve"]

ENV = "RADBENCH_METRIC_ARGS"


def parse_metric_args(text: str) -> dict[str, dict[str, str]]:
    """``"bertscore.idf=true,umls.backend=hpo"`` -> ``{"bertscore": {"idf": "true"}, "umls": {...}}``."""
    out: dict[str, dict[str, str]] = {}
    for name, value in parse_kv(text, ENV).items():
        group, dot, key = name.partition(".")
        if not dot or not group or not key:
            raise UsageError(f"{ENV}: expected 'group.key=value', got {name + '=' + value!r}")
        out.setdefault(group, {})[key] = value
    return out


def resolve(group: str, explicit: Mapping[str, Any], schema: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """This metric's arguments: environment values converted by ``schema``, then explicit ones on top."""
    from_env = parse_metric_args(os.environ.get(ENV, "")).get(group, {})
    unknown = sorted(set(from_env) - set(schema)) + sorted(set(explicit) - set(schema))
    if unknown:
        raise UsageError(f"metric {group!r}: unknown argument {unknown[0]!r}; valid: {', '.join(sorted(schema))}")
    args: dict[str, Any] = {}
    for key, raw in from_env.items():
        try:
            args[key] = schema[key](raw)
        except ValueError as exc:
            raise UsageError(f"{ENV}: {group}.{key}: {exc}") from None
    args.update({k: v for k, v in explicit.items() if v is not None})
    return args
