"""Shared helpers for the benchmark scripts: the machine description and the RESULTS.md table.

Every benchmark measures a ratio of two things in one run on one machine (this machine is shared
and noisy, so absolute seconds mean little). Each script prints one ``RESULT {json}`` line per
figure; ``benchmarks/run_all.py`` collects them into ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from typing import Any


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {gpu}, Python {sys.version.split()[0]}, {platform.platform()}"


def report(figure: str, ratio: float, target: str, met: bool, detail: str, **extra: Any) -> None:
    """Print one benchmark figure as a machine-readable line (and a human one)."""
    row = {"figure": figure, "ratio": round(ratio, 3), "target": target, "met": met, "detail": detail, **extra}
    print(f"{figure}: ratio {ratio:.3f} (target {target}) {'MET' if met else 'NOT MET'} - {detail}", file=sys.stderr)
    print("RESULT " + json.dumps(row), flush=True)
