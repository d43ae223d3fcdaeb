"""The small parsers every layer shares: ``key=value,...`` lists, booleans and the cache folder.

``--model-args``, ``--gen-kwargs`` and the metric settings are all ``key=value`` lists separated by
commas; a value may itself hold commas (``gpus=0,1``, ``window=-600,1500``): a segment that does not
start with ``key=`` continues the value before it. One implementation keeps the three flags
agreeing on that rule and on their error messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from radbench.errors import UsageError

# A segment starts a new pair when it begins with a key: a name, optionally dotted, then '='.
_KEY = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*=")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off")
# Metric settings by group, values unparsed: ``{"bertscore": {"model": "/models/roberta"}, ...}``.
MetricSettings = Mapping[str, Mapping[str, str]]


def parse_kv(text: str | Mapping[str, str] | None, what: str) -> dict[str, str]:
    """``"k=v,k2=a,b"`` -> ``{"k": "v", "k2": "a,b"}``; keys and values are stripped.

    Settings that are already a mapping (built in code, e.g. a sweep's per-checkpoint model-args) are
    copied as they are: nothing is joined into a string and split again.

    A segment without ``key=`` continues the previous value, so list values need no quoting. A
    first segment without a key, an empty key or an empty segment in the middle is a
    :class:`UsageError` naming the segment (``what`` names the flag); one trailing comma is allowed.
    """
    if isinstance(text, Mapping):
        return {str(k): str(v) for k, v in text.items()}
    if not text or not text.strip():
        return {}
    from radbench.security import redact

    segments = text.split(",")
    if len(segments) > 1 and not segments[-1].strip():
        segments.pop()
    out: dict[str, str] = {}
    last: str | None = None
    for segment in segments:
        match = _KEY.match(segment)
        if match:
            last = match.group(1)
            out[last] = segment[match.end():].strip()
        elif last is not None and segment.strip() and "=" not in segment:
            out[last] = f"{out[last]},{segment.strip()}"
        else:
            raise UsageError(f"{what}: {redact(segment.strip())!r} is not key=value (expected k=v,k2=v2)")
    return out


def parse_bool(text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case); anything else is a :class:`ValueError`.

    A ``ValueError`` rather than a usage error, so callers can name the flag and key in their message.
    """
    value = text.strip().lower()
    if value in TRUE:
        return True
    if value in FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use 1 or 0)")


def cache_root() -> Path:
    """radbench's per-user cache (``RADBENCH_CACHE`` overrides it): demo data, metric caches, indexes."""
    return Path(os.environ.get("RADBENCH_CACHE") or Path.home() / ".cache" / "radbench")
