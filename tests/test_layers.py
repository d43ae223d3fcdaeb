"""The import layers in ``.importlinter`` hold (contracts at the bottom, plugins, orchestration on top).

models/, tasks/, metrics/ and leaderboard/ install as ``radbench.*`` subpackages (setup.cfg
package_dir), which import-linter cannot see in a source checkout; the test therefore assembles
the installed layout in a temporary folder and lints that.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SUBPACKAGES = ("models", "tasks", "metrics", "leaderboard")


def test_import_layers_hold(tmp_path: Path) -> None:
    pytest.importorskip("importlinter", reason="import-linter is in the `test` extra (setup.cfg)")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "files", "snapshots")
    shutil.copytree(ROOT / "radbench", tmp_path / "radbench", ignore=ignore)
    for name in SUBPACKAGES:
        shutil.copytree(ROOT / name, tmp_path / "radbench" / name, ignore=ignore)
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename='.importlinter'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]


def test_every_radbench_module_has_a_layer() -> None:
    """A module added to radbench/ must be placed in a layer of ``.importlinter``, or no contract checks it."""
    import configparser

    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    bottom = set(config["importlinter:contract:bottom"]["source_modules"].split())
    top = set(config["importlinter:contract:bottom"]["forbidden_modules"].split()) - {
        f"radbench.{name}" for name in SUBPACKAGES}
    modules = {f"radbench.{p.stem}" for p in (ROOT / "radbench").glob("*.py") if p.stem not in ("__init__", "__main__")}
    modules |= {f"radbench.{p.parent.name}" for p in (ROOT / "radbench").glob("*/__init__.py")}
    assert not bottom & top, bottom & top
    assert modules - bottom - top == set(), "modules in no layer of .importlinter"
    assert (bottom | top) - modules == set(), "layers name modules that do not exist"
