"""Metric arguments: choosing a BERTScore encoder or a UMLS backend without writing code.

The command line collects ``group.key=value`` settings (``--metric-args`` on top of the
``RADBENCH_METRIC_ARGS`` environment variable, read once by the CLI) and hands them down
explicitly; ``Metric.from_settings`` turns one group's strings into typed constructor keywords
with the metric's ``SCHEMA``. Every value that changes numbers ends up in the metric's ``config()``, hence in
``results.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from radbench.errors import UsageError
from radbench.options import parse_bool, parse_kv

__all__ = ["ENV", "parse_bool", "parse_metric_args", "resolve"]

ENV = "RADBENCH_METRIC_ARGS"


def parse_metric_args(text: str, what: str = ENV) -> dict[str, dict[str, str]]:
    """``"bertscore.idf=true,umls.backend=hpo"`` -> ``{"bertscore": {"idf": "true"}, "umls": {...}}``."""
    out: dict[str, dict[str, str]] = {}
    for name, value in parse_kv(text, what).items():
        group, dot, key = name.partition(".")
        if not dot or not group or not key:
            raise UsageError(f"{what}: expected 'group.key=value', got {name + '=' + value!r}")
        out.setdefault(group, {})[key] = value
    return out


def resolve(group: str, explicit: Mapping[str, Any], schema: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
    """A metric's constructor keywords that were given (``None`` means not given), names checked."""
    unknown = sorted(set(explicit) - set(schema))
    if unknown:
        raise UsageError(f"metric {group!r}: unknown argument {unknown[0]!r}; valid: {', '.join(sorted(schema))}")
    return {k: v for k, v in explicit.items() if v is not None}
