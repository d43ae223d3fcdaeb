"""Secrets never reach results, logs or predictions; nothing loads remote code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from radbench.errors import SampleError, UsageError
from radbench.security import REDACTED, redact
from tests.support.fake_openai import FakeOpenAI
from tests.conftest import TESTS

ROOT = TESTS.parent


def test_redact_by_name_shape_and_environment(monkeypatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-123456789")
    got = redact({"api_key": "abc", "base_url": "http://x", "note": "uses tok-123456789 inside",
                  "nested": [{"password": "p"}, "sk-abcdefghijklmnop"]})
    assert got == {"api_key": REDACTED, "base_url": "http://x", "note": f"uses {REDACTED} inside",
                   "nested": [{"password": REDACTED}, REDACTED]}


def test_a_secret_in_model_args_or_env_is_in_no_output_file(tmp_path: Path) -> None:
    secret_env = "sk-envsecret-0123456789"
    secret_arg = "sk-argsecret-0123456789"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": secret_env}
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "radbench", "run", "--model", "tests.support.adapters:EchoAdapter", "--task",
         "diagnosis", "--dataset", "demo", "--limit", "3", "--output", str(out),
         "--model-args", f"fail_on=none,api_key={secret_arg}"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["model_args"] == {"fail_on": "none", "api_key": REDACTED}
    for path in out.rglob("*"):
        if path.is_file():
            text = path.read_text(errors="replace")
            assert secret_env not in text and secret_arg not in text, path
    assert secret_env not in proc.stdout + proc.stderr and secret_arg not in proc.stdout + proc.stderr


def test_no_trust_remote_code_anywhere() -> None:
    offenders = []
    for folder in ("radbench", "models", "tasks", "metrics", "leaderboard"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if re.search(r"trust_remote_code\s*=\s*True", line):
                    offenders.append(f"{path}:{number}")
    assert not offenders


# -- the API client: the key stays with its origin, a request has one deadline, URLs are redacted --------


def _api(srv, **extra: str):
    from radbench.models.openai_api import OpenAIAdapter

    args = {"base_url": srv.base_url, "model": srv.model, "timeout": "2", "backoff": "0", "retries": "0", **extra}
    return OpenAIAdapter.from_args(**args)


def _ask(text: str):
    from radbench.types import Request, Segment, Turn

    return Request(sample_id="s", turns=(Turn((Segment(text=text),), sample_id="s"),), gen_kwargs={"max_new_tokens": 8})


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("methods", [("GET", "POST"), ("POST",)])
def test_the_key_never_follows_a_redirect_to_another_origin(status: int, methods: tuple[str, ...],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    key = "sk-redirect-SECRET-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", key)
    with FakeOpenAI() as elsewhere, FakeOpenAI() as origin:
        origin.redirect = (status, elsewhere.base_url + "/chat/completions")
        origin.redirect_methods = methods
        with pytest.raises(UsageError, match="redirect to another origin") as err:
            _api(origin).generate([_ask("is there an effusion")])
        assert key not in str(err.value)
        assert elsewhere.headers == [], "the other origin was contacted"
        assert all(h.get("Authorization") == f"Bearer {key}" for h in origin.headers)


def test_a_same_origin_redirect_is_followed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-same-origin-0123456789")
    with FakeOpenAI() as srv:
        old = srv.base_url.replace("/v1", "/old/v1")
        srv.redirect = (307, "/v1/chat/completions")
        srv.redirect_methods = ("POST",)
        adapter = _api(srv, base_url=old)
        srv.redirect = None
        assert adapter.generate([_ask("one two")]) == ["0 image(s): two one"]
        srv.redirect = (308, "/v1/chat/completions")
        assert adapter.generate([_ask("three four")]) == ["0 image(s): four three"]
        assert srv.paths[-2:] == ["/old/v1/chat/completions", "/v1/chat/completions"]


def test_a_trickling_server_does_not_outlive_the_timeout() -> None:
    with FakeOpenAI() as srv:
        adapter = _api(srv, timeout="1")
        srv.trickle_seconds = 0.3  # each byte well inside the per-read timeout, the answer far outside
        started = time.monotonic()
        with pytest.raises(SampleError, match="timed out after 1.0s"):
            adapter.generate([_ask("is there an effusion")])
        assert time.monotonic() - started < 1.8


def test_secrets_in_base_url_are_sent_but_never_recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from radbench import registry
    from radbench.runner import RunConfig, run
    from tests.support.data_roots import png

    secret = "AZSECRET0123456789"
    monkeypatch.setitem(registry.BUILTIN["datasets"], "api-faults", "tests.support.fake_openai:FaultDataset")
    png(tmp_path / "data" / "x.png", 1)
    with FakeOpenAI() as srv:
        host = srv.base_url.split("//", 1)[1]
        base = f"http://user:PW{secret}@{host}?api-version=2024-02&api-key={secret}&sig={secret}"
        out = tmp_path / "run"
        config = RunConfig(model="openai", task="vqa", dataset="api-faults", data_root=str(tmp_path / "data"),
                           model_args=f"base_url={base},model=fake-vlm,timeout=1,backoff=0,retries=0",
                           output=out, quiet=True, limit=2)
        run(config)
        assert all(p.endswith(f"?api-version=2024-02&api-key={secret}&sig={secret}") for p in srv.paths)
    results = json.loads((out / "results.json").read_text())
    assert "api-version=2024-02" in results["config"]["model_args"]["base_url"]
    for path in out.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


def test_redact_url_hides_userinfo_and_secret_query_values() -> None:
    from radbench.security import redact_url

    got = redact_url("https://me:pw@h.example/v1?api-version=1&api-key=K1&X-Amz-Signature=K2&access_token=K3")
    assert got == f"https://{REDACTED}@h.example/v1?api-version=1&api-key={REDACTED}&X-Amz-Signature={REDACTED}&access_token={REDACTED}"
    assert redact({"note": "failed at http://h/v1?token=abc, retry"}) == {"note": f"failed at http://h/v1?token={REDACTED}, retry"}


def _pickled_llama(folder: Path) -> Path:
    """A transformers LLaMA folder whose only weights file also pickles an ``argparse.Namespace``."""
    import argparse

    import torch
    from transformers import LlamaForCausalLM

    from radbench.models import tiny

    lm = LlamaForCausalLM(tiny.tiny_llama_config(64))
    lm.config.save_pretrained(folder)
    torch.save({**lm.state_dict(), "args": argparse.Namespace(lr=1e-4)}, folder / "pytorch_model.bin")
    return folder


def test_a_pickled_lm_path_is_one_line_with_the_conversion_steps(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """Med-Flamingo's ``lm_path`` weights that need unpickling: exit 2, one line, never torch's advice."""
    pytest.importorskip("transformers")
    from radbench.cli import main

    lm = _pickled_llama(tmp_path / "llama")
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "model.pt").write_bytes(b"")
    (tmp_path / "clip.bin").write_bytes(b"")
    code = main(["run", "--model", "medflamingo", "--task", "vqa", "--dataset", "demo", "--output", str(tmp_path / "run"),
                 "--quiet", "--model-args", f"checkpoint={tmp_path / 'ckpt'},lm_path={lm},vision_path={tmp_path / 'clip.bin'}"])
    out, err = capsys.readouterr()
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in out + err, err
    assert f"lm_path {lm} holds pickled objects" in err and "weights_only=False will likely succeed" not in err
    assert f"save_file(" in err and f"'{lm}/model.safetensors'" in err and "docs/security.md" in err


def test_a_pickled_checkpoint_is_refused_with_the_conversion_steps(tmp_path: Path) -> None:
    """The same for any checkpoint read through ``load_state_dict``; the steps it prints work."""
    import torch

    from radbench.models.loading import load_state_dict

    path = _pickled_llama(tmp_path / "llama") / "pytorch_model.bin"
    with pytest.raises(UsageError) as info:
        load_state_dict(path, "medflamingo")
    message = str(info.value)
    assert "\n" not in message and "will likely succeed" not in message
    command = re.search(r'python -c "(.+?)"', message).group(1)
    subprocess.run([sys.executable, "-c", command], check=True, timeout=120)
    converted = load_state_dict(Path(f"{path}.safetensors"), "medflamingo")
    assert set(converted) == set(torch.load(path, weights_only=False)) - {"args"}
