"""A third-party package adds a model through one entry point, with no edit to radbench."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


# What each built-in adapter declares it does with --shots and --gen-kwargs (docs/models.md).
DECLARED = {
    "majority": (False, frozenset()),
    "retrieval": (False, frozenset()),
    "medvint": (False, {"max_new_tokens", "num_beams"}),
    "radfm": (True, {"max_new_tokens", "num_beams"}),
    "medflamingo": (True, {"max_new_tokens", "num_beams"}),
    "openflamingo": (True, {"max_new_tokens", "num_beams"}),
    "llava-med": (True, {"max_new_tokens", "num_beams"}),
    "openai": (True, {"max_new_tokens", "temperature", "top_p"}),
    "python": (True, None),
}


@pytest.mark.parametrize("model", sorted(DECLARED))
def test_every_builtin_adapter_declares_what_it_supports(model: str) -> None:
    from radbench import registry

    cls = registry.get("models", model)
    shots, gen = DECLARED[model]
    assert cls.supports_shots is shots
    if gen is None:
        assert cls.gen_kwargs_honoured is None and cls.unsupported(3, {"anything": 1}) is None
    else:
        assert set(gen) <= cls.gen_kwargs_honoured and (not gen or "max_new_tokens" in cls.gen_kwargs_honoured)
        assert (cls.unsupported(2, {}) is None) is shots
        assert "no_such_setting" in (cls.unsupported(0, {"no_such_setting": 1}) or "")


@pytest.mark.parametrize(("model", "args", "needle"), [
    ("majority", ["--shots", "3"], "model 'majority' ignores few-shot exemplars, so --shots 3"),
    ("retrieval", ["--shots", "1"], "ignores few-shot exemplars"),
    ("majority", ["--gen-kwargs", "temperature=0.7"], "ignores --gen-kwargs temperature (it applies: none)"),
    ("retrieval", ["--gen-kwargs", "max_new_tokens=8"], "ignores --gen-kwargs max_new_tokens"),
    ("medvint", ["--shots", "2"], "model 'medvint' ignores few-shot exemplars"),
    ("radfm", ["--gen-kwargs", "top_k=5"], "ignores --gen-kwargs top_k (it applies: do_sample, early_stopping, length_penalty, max_new_tokens, num_beams"),
])
def test_settings_an_adapter_ignores_are_refused_before_loading(tmp_path: Path, capsys, model: str, args: list[str],
                                                                needle: str) -> None:
    from radbench.cli import main

    code = main(["run", "--model", model, "--task", "vqa", "--dataset", "demo", *args, "--output", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "predictions.jsonl").exists()


def test_a_task_default_the_adapter_ignores_is_recorded(tmp_path: Path) -> None:
    import json

    from radbench.cli import main

    assert main(["run", "--model", "majority", "--task", "vqa", "--dataset", "demo", "--limit", "4", "--quiet",
                 "--output", str(tmp_path / "m")]) == 0
    res = json.loads((tmp_path / "m" / "results.json").read_text())
    assert res["shots"] == 0 and res["gen_kwargs"] == {"max_new_tokens": 64}  # the task's protocol, as recorded
    assert res["model"]["ignored_gen_kwargs"] == ["max_new_tokens"]  # ...which this baseline does not apply
    assert main(["run", "--model", "tests.support.adapters:EchoAdapter", "--task", "vqa", "--dataset", "demo",
                 "--limit", "4", "--quiet", "--shots", "1", "--output", str(tmp_path / "e")]) == 0
    res = json.loads((tmp_path / "e" / "results.json").read_text())
    assert res["shots"] == 1 and "ignored_gen_kwargs" not in res["model"]
