"""On-disk cache of metric work, keyed by content hash and metric configuration.

Rescoring the same predictions should cost nothing, and scoring a second model on the same task
should not redo the reference side (BERTScore reference embeddings, UMLS concepts of references).
Every entry is keyed by ``sha256(namespace, content)``, where the namespace is the digest of
everything that changes the stored value (metric version, encoder hash, index stamp, ...). A
configuration change therefore never reads a stale value; it simply misses.

One SQLite file per store under ``$RADBENCH_CACHE/metrics-v1/`` (default ``~/.cache/radbench``). SQLite
gives atomic multi-row writes and safe concurrent readers/writers across processes (WAL journal),
so parallel runs sharing a cache cannot tear an entry. Set ``RADBENCH_METRIC_CACHE=off`` to disable
it (nothing is read or written).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from radbench.options import cache_root
from radbench.types import stable_hash

CACHE_LAYOUT = "metrics-v1"
_BATCH = 500  # SQLite's default limit on bound parameters is 999; stay well under it.


def cache_enabled() -> bool:
    return os.environ.get("RADBENCH_METRIC_CACHE", "on").strip().lower() not in {"0", "off", "false", "no"}


def digest(obj: Any) -> str:
    """Content key of any JSON-able object (canonical JSON, SHA-256)."""
    return stable_hash(obj)


class Store:
    """A persistent ``key -> bytes`` map for one kind of work, within one configuration namespace."""

    def __init__(self, name: str, namespace: Mapping[str, Any]) -> None:
        self.path = cache_root() / CACHE_LAYOUT / f"{name}.sqlite"
        self.namespace = digest(dict(namespace))
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v BLOB NOT NULL) WITHOUT ROWID")
            self._conn = conn
        return self._conn

    def key(self, content: Any) -> str:
        return digest([self.namespace, content])

    def get_many(self, keys: Sequence[str]) -> dict[str, bytes]:
        conn = self._connect()
        found: dict[str, bytes] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start : start + _BATCH]
            marks = ",".join("?" * len(chunk))
            found.update(conn.execute(f"SELECT k, v FROM kv WHERE k IN ({marks})", chunk).fetchall())
        return found

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        conn = self._connect()
        with conn:
            conn.executemany("INSERT OR REPLACE INTO kv (k, v) VALUES (?, ?)", list(items))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __getstate__(self) -> dict[str, Any]:
        # A connection cannot cross a process boundary; the copy reconnects on first use.
        return {**self.__dict__, "_conn": None}


def cached_json(
    store: Store | None,
    contents: Sequence[Any],
    compute: Callable[[list[int]], list[Any]],
) -> list[Any]:
    """Values for ``contents`` (one JSON-able value each), computing only those not cached.

    ``compute`` receives the indices of the misses (duplicates collapsed to their first index) and
    returns their values in that order. With ``store=None`` everything is computed.
    """
    if store is None:
        keys = [digest(c) for c in contents]
        hits: dict[str, Any] = {}
    else:
        keys = [store.key(c) for c in contents]
        hits = {k: json.loads(v) for k, v in store.get_many(keys).items()}
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k not in hits:
            first.setdefault(k, i)
    missing = list(first.values())
    if missing:
        values = compute(missing)
        if len(values) != len(missing):
            raise RuntimeError(f"metric computed {len(values)} values for {len(missing)} inputs")
        new = {keys[i]: v for i, v in zip(missing, values)}
        if store is not None:
            store.put_many((k, json.dumps(v, separators=(",", ":")).encode()) for k, v in new.items())
        hits.update(new)
    return [hits[k] for k in keys]


def open_store(name: str, namespace: Mapping[str, Any], enabled: bool = True) -> Store | None:
    """The store for ``name``, or ``None`` when caching is off (by argument or environment)."""
    return Store(name, namespace) if enabled and cache_enabled() else None
