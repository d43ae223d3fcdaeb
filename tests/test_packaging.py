"""models/, tasks/, metrics/ and leaderboard/ install as radbench.* subpackages, never top-level names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TESTS

ROOT = TESTS.parent
SUBPACKAGES = {"models": "radbench.models", "tasks": "radbench.tasks", "metrics": "radbench.metrics",
               "leaderboard": "radbench.leaderboard"}


def _python(code: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)


def test_editable_install_maps_folders_to_subpackages(tmp_path: Path) -> None:
    code = (
        "import importlib, importlib.util\n"
        f"for folder, name in {SUBPACKAGES!r}.items():\n"
        "    mod = importlib.import_module(name)\n"
        "    print(name, mod.__path__[0])\n"
        "    assert importlib.util.find_spec(folder) is None, folder\n"
    )
    out = _python(code, cwd=tmp_path)  # outside the checkout, so its folders are not on sys.path
    assert out.returncode == 0, out.stderr
    for folder, name in SUBPACKAGES.items():
        assert f"{name} {ROOT / folder}" in out.stdout


@pytest.mark.slow
def test_regular_install_has_no_generic_top_level_names(tmp_path: Path) -> None:
    target = tmp_path / "site"
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target",
         str(target), str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    top = {p.name for p in target.iterdir()}
    assert "radbench" in top
    assert not top & set(SUBPACKAGES), top
    assert (target / "radbench/tasks/demo/files/vqa2d_test.csv").is_file()
    assert (target / "radbench/schemas/results.schema.json").is_file()
    code = (
        "import radbench.tasks.demo as d, radbench.models.baselines, radbench.metrics.bleu\n"
        "print(len(d.DemoDataset().load('vqa', 'test')), d.__file__)\n"
    )
    out = _python(code, cwd=tmp_path, env={"PYTHONPATH": str(target), "RADBENCH_CACHE": str(tmp_path / "cache"),
                                            "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    count, where = out.stdout.split()
    assert int(count) > 30 and where.startswith(str(target))
