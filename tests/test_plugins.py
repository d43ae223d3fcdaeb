"""A third-party package adds a model through one entry point, with no edit to radbench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PLUGIN = '''
from radbench.models.base import Adapter


class Constant(Adapter):
    name = "constant-plugin"
    version = "7"
    max_batch_size = 8

    def generate(self, requests):
        return ["no" for _ in requests]

    def fingerprint(self):
        return "constant-plugin-weights"
'''


def test_entry_point_plugin_is_listed_and_runs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "rb_plugin").mkdir(parents=True)
    (site / "rb_plugin" / "__init__.py").write_text(PLUGIN)
    dist = site / "rb_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rb-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[radbench.models]\nconstant = rb_plugin:Constant\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run([sys.executable, "-m", "radbench", "list", "models"], capture_output=True, text=True,
                            env=env, timeout=60)
    assert "constant" in listed.stdout.split()
    out = tmp_path / "run"
    ran = subprocess.run([sys.executable, "-m", "radbench", "run", "--model", "constant", "--task", "diagnosis",
                          "--dataset", "demo", "--output", str(out), "--quiet"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == {"name": "constant-plugin", "version": "7", "fingerprint": "constant-plugin-weights",
                            "trained_on": "unknown"}
    assert 0 < res["metrics"]["accuracy"]["value"] < 1
