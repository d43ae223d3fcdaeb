"""The shared ``key=value`` parser, boolean parser and cache folder (radbench/options.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from radbench.errors import UsageError
from radbench.options import cache_root, parse_bool, parse_kv


@pytest.mark.parametrize(("text", "expected"), [
    (None, {}),
    ("", {}),
    ("a=1", {"a": "1"}),
    (" a = 1 , b=two ", {"a": "1", "b": "two"}),
    ("gpus=0,1", {"gpus": "0,1"}),
    ("device_map=auto,gpus=0,1,2,dtype=bf16", {"device_map": "auto", "gpus": "0,1,2", "dtype": "bf16"}),
    ("window=-600,1500", {"window": "-600,1500"}),
    ("bertscore.model=/m/x,umls.backend=hpo,", {"bertscore.model": "/m/x", "umls.backend": "hpo"}),
    ("checkpoint=/a/b=c", {"checkpoint": "/a/b=c"}),
    ("a=", {"a": ""}),
])
def test_key_value_lists_keep_commas_inside_values(text: str | None, expected: dict[str, str]) -> None:
    assert parse_kv(text, "--x") == expected


@pytest.mark.parametrize(("text", "bad"), [
    ("=x", "=x"), ("checkpoint,a=1", "checkpoint"), ("a=1,,b=2", ""), ("a=1,=2", "=2"), ("a=1,b c=2", "b c=2"),
])
def test_malformed_key_value_lists_name_the_segment(text: str, bad: str) -> None:
    with pytest.raises(UsageError, match=f"^--x: {bad!r} is not key=value"):
        parse_kv(text, "--x")


def test_a_secret_in_a_malformed_segment_is_redacted() -> None:
    with pytest.raises(UsageError) as info:
        parse_kv("sk-abcdefghijkl", "--model-args")
    assert "sk-abcdefghijkl" not in str(info.value)


@pytest.mark.parametrize(("text", "value"), [("1", True), ("TRUE", True), (" on", True), ("0", False), ("No", False)])
def test_booleans(text: str, value: bool) -> None:
    assert parse_bool(text) is value


def test_a_non_boolean_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="'maybe' is not a boolean"):
        parse_bool("maybe")


def test_cache_root_follows_radbench_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RADBENCH_CACHE", str(tmp_path))
    assert cache_root() == tmp_path
    monkeypatch.delenv("RADBENCH_CACHE")
    assert cache_root() == Path.home() / ".cache" / "radbench"


def test_the_multi_gpu_example_in_docs_models_runs_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    """The documented ``gpus=0,1`` command line parses into GPUs 0 and 1 (no CUDA needed)."""
    import shlex

    import torch

    from radbench.cli import build_parser
    from radbench.models.placement import parse_placement
    from radbench.models.radfm import RadFMAdapter

    docs = (Path(__file__).parent.parent / "docs" / "models.md").read_text(encoding="utf-8")
    block = next(b for b in docs.split("```") if "gpus=0,1" in b and b.strip().startswith("radbench run"))
    argv = shlex.split(block.replace("\\\n", " "))
    args = build_parser().parse_args(argv[1:])
    model_args = parse_kv(args.model_args, "--model-args")
    assert model_args["gpus"] == "0,1" and model_args["device_map"] == "auto"
    parsed = RadFMAdapter.Args.parse("radfm", model_args)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_placement("radfm", parsed.placement()) == [torch.device("cuda", 0), torch.device("cuda", 1)]
