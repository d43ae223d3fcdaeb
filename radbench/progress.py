"""Progress reporting: a rich bar with ETA and samples/s on a terminal, plain lines otherwise.

Plain lines (at most one every few seconds, and one at the end) keep CI logs readable; ``--quiet``
silences both. Progress goes to stderr so stdout stays clean for tables and piping.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType


class Progress:
    def __init__(self, total: int, description: str, quiet: bool = False, interval: float = 5.0) -> None:
        self.total = total
        self.description = description
        self.quiet = quiet
        self.interval = interval
        self.done = 0
        self._bar = None
        self._start = time.monotonic()
        self._last = 0.0

    def __enter__(self) -> "Progress":
        if self.quiet or self.total == 0:
            return self
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total, rate="")
        return self

    def advance(self, n: int) -> None:
        self.done += n
        elapsed = time.monotonic() - self._start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=f"{rate:.1f} samples/s")
        elif not self.quiet and (time.monotonic() - self._last >= self.interval or self.done >= self.total):
            self._last = time.monotonic()
            eta = (self.total - self.done) / rate if rate > 0 else float("nan")
            print(
                f"radbench: {self.description}: {self.done}/{self.total} ({rate:.1f} samples/s, ETA {eta:.0f}s)",
                file=sys.stderr,
                flush=True,
            )

    def note(self, message: str) -> None:
        """A one-off line (e.g. a batch-size change) above the bar, or on stderr; silent with --quiet."""
        if self._bar is not None:
            self._bar.console.print(f"radbench: {message}")
        elif not self.quiet:
            print(f"radbench: {self.description}: {message}", file=sys.stderr, flush=True)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._bar is not None:
            self._bar.stop()
