"""Helpers for tests that need a run directory whose ``results.json`` differs in one place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable


def copy_run_with(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    """Copy run directory ``src`` to ``dst`` and apply ``edit`` to its parsed ``results.json``."""
    shutil.copytree(src, dst)
    data = json.loads((dst / "results.json").read_text())
    edit(data)
    (dst / "results.json").write_text(json.dumps(data))
    return dst
