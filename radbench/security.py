"""Keeping secrets out of everything radbench writes.

API keys reach adapters through environment variables or ``--model-args``; results, logs and
leaderboards record the arguments a run used, so every recorded mapping passes through
:func:`redact` first. A key counts as secret by its name (``api_key``, ``token``, ...), a value by
its shape (``sk-...``, ``hf_...``, ``Bearer ...``) or by equalling the value of a secret-named
environment variable; a URL loses its userinfo and its secret-named query values.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any

REDACTED = "***redacted***"
SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential|auth)", re.IGNORECASE)
SECRET_PARAM = re.compile(r"(key|token|secret|signature|sig|password|passwd|credential|auth)", re.IGNORECASE)
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
SECRET_VALUE = re.compile(r"^(sk-[A-Za-z0-9_-]{8,}|hf_[A-Za-z0-9]{8,}|Bearer\s+\S+|ghp_[A-Za-z0-9]{8,})$")


def secret_env_values() -> set[str]:
    """Values of environment variables whose names look secret (never written anywhere)."""
    return {v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= 6}


def redact_url(url: str) -> str:
    """``url`` with its userinfo (``user:password@``) and secret-named query values replaced.

    Azure-style ``?api-key=...``, presigned ``X-Amz-Signature=...``/``sig=...`` and ``token=`` values
    hide; other parameters (``api-version``) stay readable so a recorded URL still says what ran.
    """
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        return REDACTED
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{urllib.parse.quote(k, safe='')}={REDACTED if SECRET_PARAM.search(k) else urllib.parse.quote(v, safe='')}"
            for k, v in pairs
        )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_urls(text: str) -> str:
    """Every URL inside ``text`` passed through :func:`redact_url`."""
    def one(match: re.Match[str]) -> str:
        url = match.group(0)
        body = url.rstrip(",.;:)]}")  # sentence punctuation after a URL is not part of it
        return redact_url(body) + url[len(body):]

    return URL.sub(one, text)


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
        if "://" in obj:
            obj = redact_urls(obj)
        for value in env:
            if value in obj:
                obj = obj.replace(value, REDACTED)
        return obj
    return obj
