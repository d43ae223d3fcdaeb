"""One writer per run directory, across processes and hosts, that a dead writer cannot block.

The lock file ``.radbench.lock`` names its holder (pid, host, a random token) and its modification
time is the holder's heartbeat, refreshed every :data:`HEARTBEAT_SECONDS` while the run lives. A
lock counts as stale when

* its holder is on this host and that process is gone (or a zombie), or
* its heartbeat is older than :data:`STALE_SECONDS` (``RADBENCH_LOCK_STALE_SECONDS``, default 300):
  the rule that works across hosts, so a SLURM job requeued on another node takes over the lock
  its pre-empted predecessor left. Hosts sharing a run folder must have clocks within that margin.

Every check-and-take happens under a short ``filelock.FileLock`` on ``.radbench.lock.guard``, so
two processes finding the same stale lock cannot both take it over. The guard file stays in the
run folder (deleting a lock file others may be waiting on would reopen the race). SIGTERM and SIGHUP end the run
like Ctrl-C does (the lock is released on the way out); SIGKILL leaves a lock that goes stale.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import signal
import socket
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any

import filelock

from radbench import safe_io
from radbench.errors import UsageError
from radbench.store import LOCK

HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = float(os.environ.get("RADBENCH_LOCK_STALE_SECONDS", "300"))
GUARD_TIMEOUT = 30.0


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so ``finally`` blocks (the lock's) run."""


def _on_signal(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"signal {signal.Signals(signum).name}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed process nobody has reaped yet (a zombie) still answers kill(0)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class RunLock:
    """``acquire()`` or one line naming the live holder; ``release()`` in a ``finally``."""

    def __init__(self, directory: Path, stale_seconds: float | None = None) -> None:
        self.path = directory / LOCK
        self.guard = filelock.FileLock(str(directory / (LOCK + ".guard")), timeout=GUARD_TIMEOUT)
        self.stale_seconds = STALE_SECONDS if stale_seconds is None else stale_seconds
        self.token = secrets.token_hex(8)
        self.held = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._old_handlers: dict[int, Any] = {}

    def _holder(self) -> tuple[dict[str, Any] | None, float | None]:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None, None
        try:
            holder = safe_io.loads_json(self.path.read_text(), allow_nan=True)
        except (OSError, ValueError):
            holder = None
        # A half-written or garbage lock (its writer killed mid-write) is judged by its age alone.
        return holder if isinstance(holder, dict) else {}, age

    def _stale(self, holder: dict[str, Any], age: float) -> bool:
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if not _pid_alive(holder["pid"]):
                return True
        return age > self.stale_seconds

    def acquire(self) -> None:
        try:
            with self.guard:
                holder, age = self._holder()
                if holder is not None and age is not None and not self._stale(holder, age):
                    raise UsageError(
                        f"{self.path.parent}: in use by another radbench process (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, heartbeat {age:.0f}s ago; stale after {self.stale_seconds:.0f}s); "
                        "wait for it or use another --output")
                # Written in place: only a guard holder writes or judges the lock file.
                self.path.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                 "token": self.token}))
                self.held = True
        except filelock.Timeout:
            raise UsageError(f"{self.path}: could not take the run lock within {GUARD_TIMEOUT:.0f}s") from None
        atexit.register(self.release)  # also covers a signal that lands before the caller's ``try``
        self._beat = threading.Thread(target=self._heartbeat, name="radbench-lock-heartbeat", daemon=True)
        self._beat.start()
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    self._old_handlers[sig] = signal.signal(sig, _on_signal)

    def _mine(self) -> bool:
        holder, _ = self._holder()
        return bool(holder) and holder.get("token") == self.token

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        atexit.unregister(self.release)
        for sig, old in self._old_handlers.items():
            signal.signal(sig, old)
        self._old_handlers.clear()
        try:
            with self.guard:
                if self._mine():  # never delete a lock another process took over
                    self.path.unlink(missing_ok=True)
        except filelock.Timeout:
            pass
        self.held = False
