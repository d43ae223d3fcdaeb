"""``--model python --model-args fn=package.module:callable``: any function becomes a model."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radbench.cli import main
from radbench.errors import SampleError, UsageError
from radbench.models.python_callable import CallableInput, PythonCallableAdapter, render_text
from radbench.store import PREDICTIONS, read_jsonl
from radbench.types import ImageRef, Request, Segment, Turn

SEEN: list[list[CallableInput]] = []


def describe_inputs(inputs: list[CallableInput]) -> list[str]:
    """Answers with what it was given: image count and shapes, then the prompt's last word."""
    SEEN.append(inputs)
    out = []
    for item in inputs:
        if "unanswerable" in item.text:
            raise SampleError("unanswerable (test)")
        shapes = "/".join("x".join(map(str, im.shape)) for im in item.images)
        words = item.text.split()
        out.append(f"{len(item.images)} {shapes} {words[-1] if words else ''}".strip())
    return out


class Scaled:
    """A class target: built once with --model-args, e.g. a checkpoint path and a setting."""

    def __init__(self, checkpoint: str, mode: str = "plain") -> None:
        self.tag = Path(checkpoint).read_text().strip()
        self.mode = mode

    def __call__(self, inputs: list[CallableInput]) -> list[str]:
        return [f"{self.tag}:{self.mode}:{len(i.images)}" for i in inputs]


class WithFingerprint:
    def __call__(self, inputs: list[CallableInput]) -> list[str]:
        return ["" for _ in inputs]

    def fingerprint(self) -> str:
        return "step-4000"


def wrong_length(inputs: list[CallableInput]) -> list[str]:
    return ["x"]


def not_strings(inputs: list[CallableInput]) -> list[str]:
    return [None for _ in inputs]  # type: ignore[misc]


def build(**args: str) -> PythonCallableAdapter:
    built = PythonCallableAdapter.from_args(**args)
    assert isinstance(built, PythonCallableAdapter)
    return built


def test_inputs_carry_text_with_placeholders_and_loaded_images(tmp_path: Path) -> None:
    np.save(tmp_path / "v.npy", np.zeros((1, 4, 5, 3), dtype=np.float32))
    np.save(tmp_path / "p.npy", np.zeros((3, 6, 7), dtype=np.float32))
    vol, png = ImageRef("v.npy", kind="3d", root=str(tmp_path)), ImageRef("p.npy", root=str(tmp_path))
    exemplar = Turn((Segment(image=png), Segment(text="Is it round?")), answer="yes", sample_id="e1")
    query = Turn((Segment(image=vol), Segment(image=png), Segment(text="Is it square?")), sample_id="q1")
    req = Request("q1", (exemplar, query), gen_kwargs={"max_new_tokens": 5}, options=("yes", "no"))
    assert render_text(req) == "<image>Is it round?\nyes\n\n<image><image>Is it square?"
    seen = importlib.import_module("tests.test_adapter_callable").SEEN  # the copy fn= loads, not pytest's
    seen.clear()
    out = build(fn="tests.test_adapter_callable:describe_inputs").generate([req])
    assert out == ["3 3x6x7/1x4x5x3/3x6x7 square?"]
    item = seen[0][0]
    assert item.max_new_tokens == 5 and item.options == ("yes", "no") and item.request is req
    assert all(im.dtype == np.float32 for im in item.images)
    with pytest.raises(SampleError, match="unanswerable"):  # a per-sample failure passes through to the runner
        build(fn="tests.test_adapter_callable:describe_inputs").generate([Request("u", (Turn((Segment(text="unanswerable"),)),))])


def test_class_target_gets_model_args_and_fingerprints_the_checkpoint_content(tmp_path: Path) -> None:
    ckpt = tmp_path / "weights.txt"
    ckpt.write_text("A")
    first = build(fn="tests.test_adapter_callable:Scaled", checkpoint=str(ckpt), mode="x")
    assert first.generate([Request("s", (Turn((Segment(text="q"),)),))]) == ["A:x:0"]
    assert build(fn="tests.test_adapter_callable:Scaled", checkpoint=str(ckpt), mode="x").fingerprint() == first.fingerprint()
    ckpt.write_text("B")  # same path, different weights
    assert build(fn="tests.test_adapter_callable:Scaled", checkpoint=str(ckpt), mode="x").fingerprint() != first.fingerprint()
    own = build(fn="tests.test_adapter_callable:WithFingerprint")
    assert own.fingerprint() != build(fn="tests.test_adapter_callable:describe_inputs").fingerprint()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({}, "needs --model-args fn=package.module:callable"),
        ({"fn": "tests.test_adapter_callable:nope"}, "has no attribute 'nope'"),
        ({"fn": "no_such_pkg.mod:f"}, "cannot import module"),
        ({"fn": "tests.test_adapter_callable:describe_inputs", "checkpoint": "x"}, "takes no other --model-args"),
        ({"fn": "tests.test_adapter_callable:Scaled"}, "failed"),
        ({"fn": "tests.test_adapter_callable:SEEN"}, "not callable"),
        ({"fn": "tests.test_adapter_callable:describe_inputs", "batch_size": "0"}, "batch_size must be >= 1"),
    ],
)
def test_bad_model_args_are_one_line_usage_errors(args: dict[str, str], needle: str) -> None:
    with pytest.raises(UsageError, match=needle.replace("(", r"\(")):
        PythonCallableAdapter.from_args(**args)


@pytest.mark.parametrize("fn", ["wrong_length", "not_strings"])
def test_bad_return_values_are_reported(fn: str) -> None:
    adapter = build(fn=f"tests.test_adapter_callable:{fn}")
    with pytest.raises(UsageError, match="expected a list of strings|where a string was expected"):
        adapter.generate([Request("a", (Turn((Segment(text="q"),)),)), Request("b", (Turn((Segment(text="q"),)),))])


def test_cli_run_on_the_demo(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["run", "--model", "python", "--model-args", "fn=tests.test_adapter_callable:describe_inputs,batch_size=3",
                 "--task", "vqa", "--dataset", "demo", "--limit", "4", "--output", str(out), "--quiet"])
    assert code == 0
    records = read_jsonl(out / PREDICTIONS)[0]
    assert len(records) == 4 and all(r["error"] is None for r in records)
    assert all(r["prediction"].startswith("1 3x256x256 ") for r in records)
    results = json.loads((out / "results.json").read_text())
    assert results["model"]["fn"] == "tests.test_adapter_callable:describe_inputs"


def test_fn_is_imported_from_the_working_directory_as_python_m_does(tmp_path: Path) -> None:
    """``radbench`` (the console script) finds ./mylab/toy.py, which only the working directory holds."""
    package = tmp_path / "mylab"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "toy.py").write_text(
        "class Model:\n"
        "    def __init__(self, answer: str = 'yes') -> None:\n"
        "        self.answer = answer\n"
        "    def __call__(self, inputs):\n"
        "        return [self.answer for _ in inputs]\n"
    )
    script = Path(sys.executable).parent / "radbench"
    proc = subprocess.run(
        [str(script), "run", "--model", "python", "--model-args", "fn=mylab.toy:Model,answer=no", "--task", "vqa",
         "--dataset", "demo", "--limit", "3", "--output", "out", "--quiet"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    records = read_jsonl(tmp_path / "out" / PREDICTIONS)[0]
    assert [r["prediction"] for r in records] == ["no"] * 3
    missing = subprocess.run([str(script), "run", "--model", "python", "--model-args", "fn=mylab.toy:Model",
                              "--task", "vqa", "--dataset", "demo", "--limit", "1", "--output", "o2", "--quiet"],
                             cwd=tmp_path / "out", capture_output=True, text=True, timeout=300)
    assert missing.returncode == 2 and "cannot import module 'mylab.toy'" in missing.stderr  # only from its cwd
