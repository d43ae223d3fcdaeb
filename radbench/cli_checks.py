"""Checks on command-line values made before anything is loaded.

argparse only converts types: ``--min-effect nan`` is a float, ``--seed -1`` an int. A NaN effect
size makes every comparison false (so ``--fail-on-regression`` passes a regression), a negative or
oversized seed fails inside numpy after generation has finished. Every numeric option is checked
here against its range, and a run's output folder for writability, before a model loads; a problem
is one :class:`UsageError` line naming the option.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

from radbench.errors import UsageError

MAX_SEED = 2**63 - 1  # numpy's and torch's seeds are unsigned 64-bit; Python's random takes any int
# option attribute -> (flag, smallest allowed, largest allowed)
RANGES: dict[str, tuple[str, float, float]] = {
    "seed": ("--seed", 0, MAX_SEED),
    "shots": ("--shots", 0, 1000),
    "limit": ("--limit", 1, MAX_SEED),
    "batch_size": ("--batch-size", 1, 1 << 20),
    "max_images": ("--max-images", 1, 1 << 20),
    "nproc": ("--nproc", 1, 4096),
    "iterations": ("--iterations", 1, 1_000_000),
    "min_effect": ("--min-effect", 0.0, 1.0),
    "alpha": ("--alpha", 0.0, 1.0),
    "level": ("--level", 0.0, 1.0),
}


def check_numbers(args: argparse.Namespace) -> None:
    """Raise :class:`UsageError` for the first numeric option that is not finite or out of range."""
    for attr, (flag, low, high) in RANGES.items():
        value = getattr(args, attr, None)
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"{flag} {value} is not a finite number")
        if not low <= value <= high:
            raise UsageError(f"{flag} {value} is out of range (allowed {low} to {high})")


def check_writable(folder: Path, flag: str = "--output") -> None:
    """Raise :class:`UsageError` unless ``folder`` can be written (tried with a real, removed file).

    Found here, before the model loads, instead of after hours of generation. A folder that does not
    exist yet is not created here: the probe goes into its nearest existing parent, so a run refused
    later (another run's directory, a missing checkpoint) leaves nothing behind.
    """
    target = folder
    while not target.exists() and target != target.parent:
        target = target.parent
    if not target.is_dir():
        raise UsageError(f"{flag} {folder}: not writable ({target} is a file, not a run directory)")
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".radbench-write-check.") as probe:
            probe.write(b"x" * 4096)
            probe.flush()
            os.fsync(probe.fileno())
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise UsageError(f"{flag} {folder}: not writable ({reason})") from None


def check(args: argparse.Namespace) -> None:
    """Every up-front check that applies to the parsed command."""
    check_numbers(args)
    if getattr(args, "command", None) == "run" and isinstance(getattr(args, "output", None), Path):
        check_writable(args.output)
