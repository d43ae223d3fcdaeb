"""Runs ``radbench`` with a SIGKILL injected at the N-th call of one named point.

Usage: ``python -m tests.support.crashy POINT N radbench-args...``. Points: ``generate`` (inside the
adapter), ``fsync`` (a prediction batch written but not yet synced), ``score`` (after generation,
before scores are written), ``replace`` (inside an atomic write: the temporary file is complete but
not yet renamed over results.json or predictions.jsonl).
"""

from __future__ import annotations

import os
import signal
import sys


def _killer(original, n: int):
    calls = {"count": 0}

    def wrapped(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args, **kwargs)

    return wrapped


def main() -> int:
    point, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if point == "generate":
        from tests.support import adapters

        adapters.EchoAdapter.generate = _killer(adapters.EchoAdapter.generate, n)
    elif point == "fsync":
        os.fsync = _killer(os.fsync, n)
    elif point == "score":
        from radbench import scoring

        scoring.score = _killer(scoring.score, n)
    elif point == "replace":
        os.replace = _killer(os.replace, n)
    else:
        raise SystemExit(f"unknown point {point}")
    from radbench.cli import main as radbench_main

    return radbench_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
