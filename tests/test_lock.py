"""The run lock: one winner among racing takeovers, liveness by heartbeat across hosts, released on signals."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radbench.errors import UsageError
from radbench.lock import RunLock
from radbench.store import LOCK
from tests.conftest import TESTS


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _contender(folder: str, start, done, wins) -> None:  # type: ignore[no-untyped-def]
    lock = RunLock(Path(folder))
    start.wait()
    try:
        lock.acquire()
        with wins.get_lock():
            wins.value += 1
    except UsageError:
        pass
    done.wait()  # hold the lock until every contender has tried


def test_racing_takeovers_of_one_stale_lock_have_exactly_one_winner(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    contenders = 4
    dead = _dead_pid()
    for trial in range(100):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        (folder / LOCK).write_text(json.dumps({"pid": dead, "host": socket.gethostname()}))
        start, done, wins = ctx.Barrier(contenders), ctx.Barrier(contenders), ctx.Value("i", 0)
        procs = [ctx.Process(target=_contender, args=(str(folder), start, done, wins)) for _ in range(contenders)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        assert wins.value == 1, f"trial {trial}: {wins.value} processes took over the same stale lock"


def test_a_lock_from_another_host_is_alive_until_its_heartbeat_is_stale(tmp_path: Path) -> None:
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "other-node-17"}))
    with pytest.raises(UsageError, match="pid 1 on other-node-17"):
        RunLock(tmp_path, stale_seconds=60).acquire()
    old = time.time() - 61
    os.utime(tmp_path / LOCK, (old, old))  # the pre-empted job stopped beating a minute ago
    lock = RunLock(tmp_path, stale_seconds=60)
    lock.acquire()
    assert json.loads((tmp_path / LOCK).read_text())["host"] == socket.gethostname()
    lock.release()
    assert not (tmp_path / LOCK).exists()


def test_a_live_holder_refreshes_its_heartbeat(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radbench import lock as lock_mod

    monkeypatch.setattr(lock_mod, "HEARTBEAT_SECONDS", 0.05)
    held = RunLock(tmp_path)
    held.acquire()
    old = time.time() - 1000
    os.utime(tmp_path / LOCK, (old, old))
    time.sleep(0.3)
    assert time.time() - (tmp_path / LOCK).stat().st_mtime < 5
    held.release()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_signals_release_the_lock(sig: signal.Signals, tmp_path: Path) -> None:
    code = ("import sys, time; from pathlib import Path; from radbench.lock import RunLock\n"
            "lock = RunLock(Path(sys.argv[1]))\n"
            "try:\n    lock.acquire(); print('held', flush=True); time.sleep(60)\nfinally:\n    lock.release()\n")
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    assert (tmp_path / LOCK).exists()
    proc.send_signal(sig)
    proc.wait(30)
    assert not (tmp_path / LOCK).exists(), proc.stderr.read() if proc.stderr else ""
