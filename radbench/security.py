"""Keeping secrets out of everything radbench writes.

API keys reach adapters through environment variables or ``--model-args``; results, logs and
leaderboards record the arguments a run used, so every recorded mapping passes through
:func:`redact` first. A key counts as secret by its name (``api_key``, ``token``, ...), a value by
its shape (``sk-...``, ``hf_...``, ``Bearer ...``) or by equalling the value of a secret-named
environment variable.
"""

from __future__ import annotations

import os
import re
from typing import Any

REDACTED = "***redacted***"
SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential|auth)", re.IGNORECASE)
SECRET_VALUE = re.compile(r"^(sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|Bearer\s+\S+|ghp_[A-Za-z0-9]{8,})$")


def secret_env_values() -> set[str]:
    """Values of environment variables whose names look secret (never written anywhere)."""
    return {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 6}


def redact(obj: Any, _env: set[str] | None = None) -> Any:
    """A copy of ``obj`` (nested dicts, lists, strings) with secret keys and values replaced."""
    env = secret_env_values() if _env is None else _env
    if isinstance(obj, dict):
        return {k: REDACTED if isinstance(k, str) and SECRET_NAME.search(k) else redact(v, env) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v, env) for v in obj]
    if isinstance(obj, str):
        if SECRET_VALUE.match(obj.strip()):
            return REDACTED
        for value in env:
            if value in obj:
                obj = obj.replace(value, REDACTED)
        return obj
    return obj
