"""``make bench``: run every benchmark script and write ``benchmarks/RESULTS.md``.

Each script prints ``RESULT {json}`` lines (see :mod:`benchmarks.common`); this collects them into
one table with the machine they were measured on and how loaded it was. Comparisons are ratios of
two sides measured in the same run on the same machine; start-up and test-suite figures are seconds
(their targets are absolute).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine  # noqa: E402

HERE = Path(__file__).resolve().parent
SCRIPTS = ("bench_metrics.py", "bench_process.py", "bench_batching.py", "bench_runner.py", "bench_tests.py")


def main() -> int:
    load_before = os.getloadavg()
    rows, failed = [], []
    for script in SCRIPTS:
        proc = subprocess.run([sys.executable, str(HERE / script)], capture_output=True, text=True, cwd=HERE.parent)
        sys.stderr.write(proc.stderr)
        got = [json.loads(line[len("RESULT "):]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not got:
            failed.append(f"{script} (exit {proc.returncode})")
        rows += got
    lines = [
        "# Benchmark results",
        "",
        f"Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on: {machine()}.",
        f"Load average (1 min) at the start: {load_before[0]:.1f}, at the end: {os.getloadavg()[0]:.1f} "
        f"(a machine shared with other work inflates the seconds; ratios are less affected).",
        "Comparisons are ratios of two measurements taken in the same run (`make bench`); start-up and test-suite "
        "figures are seconds.",
        "",
        "| figure | ratio | target | met | detail |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['figure']} | {r['ratio']} | {r['target']} | {'yes' if r['met'] else 'NO'} | {r['detail']} |"
              for r in rows]
    if failed:
        lines += ["", "Scripts that failed: " + ", ".join(failed)]
    (HERE / "RESULTS.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
