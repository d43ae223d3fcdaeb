"""(10) Wall time of ``make test``'s selection: the quick set (``pytest -m "not slow"``), target <= 300 s.

The target is for an idle 2-core machine; on a shared one the figure says how loaded it was (the load
average before the run is in the detail). The run must also pass: a fast failing suite is not met.
Run: ``.venv/bin/python benchmarks/bench_tests.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import report  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 300.0


def main() -> None:
    load = os.getloadavg()[0]
    # As `make test` runs it: offline, with the bytecode cache on.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    summary = next((line for line in reversed(proc.stdout.splitlines()) if re.search(r"\d+ (passed|failed)", line)),
                   f"pytest exit {proc.returncode}")
    passed = proc.returncode == 0
    if not passed:
        sys.stderr.write(proc.stdout[-4000:])
    report("(10) make test (quick set, -m 'not slow') wall time (s)", wall, f"<= {LIMIT:.0f} s",
           passed and wall <= LIMIT, f"{summary.strip('= ')}; load average before the run {load:.1f} on "
           f"{os.cpu_count()} cores")


if __name__ == "__main__":
    main()
