"""Run a CPU-bound metric over chunks of its inputs in worker processes.

The pure-Python metrics (ROUGE's LCS, BLEU's n-gram clipping, QuickUMLS matching) hold the GIL, so
threads do not help; processes do. Workers come from a ``forkserver`` context (``spawn`` where that
is unavailable): forking a parent that already runs torch or tokenizer thread pools can deadlock,
and a worker must open its own database handles (QuickUMLS, SQLite) anyway. Small inputs stay in
process, where start-up would cost more than it saves. Results keep input order, so parallel and
serial runs give identical records.

``RADBENCH_WORKERS`` overrides the worker count (``1`` disables parallelism).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def worker_count() -> int:
    """Cores this process may use (its CPU affinity, not the machine's), or ``RADBENCH_WORKERS``."""
    env = os.environ.get("RADBENCH_WORKERS", "").strip()
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _context(preload: str) -> multiprocessing.context.BaseContext:
    """A forkserver context whose server imports ``preload`` once, so workers fork with it loaded."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([preload])  # takes effect only when the server first starts
    return ctx


def chunked_map(
    func: Callable[..., list[R]],
    items: Sequence[T],
    *,
    min_items: int,
    workers: int | None = None,
    **kwargs: Any,
) -> list[R]:
    """``func(chunk, **kwargs)`` over contiguous chunks of ``items``, concatenated in order.

    ``func`` must be a module-level function (it is pickled by reference) that returns one result
    per item of its chunk. Runs in process when ``items`` has fewer than ``min_items`` entries or
    only one worker is available.
    """
    n_workers = workers or worker_count()
    if n_workers <= 1 or len(items) < min_items:
        return list(func(list(items), **kwargs))
    # A few chunks per worker balance uneven texts without paying pickling per item.
    n_chunks = n_workers * 4
    size = -(-len(items) // n_chunks)
    chunks = [list(items[i : i + size]) for i in range(0, len(items), size)]
    with ProcessPoolExecutor(max_workers=n_workers, mp_context=_context(func.__module__)) as pool:
        parts = list(pool.map(partial(func, **kwargs), chunks))
    out: list[R] = []
    for chunk, part in zip(chunks, parts):
        if len(part) != len(chunk):
            raise RuntimeError(f"{func.__name__} returned {len(part)} results for {len(chunk)} items")
        out.extend(part)
    return out
