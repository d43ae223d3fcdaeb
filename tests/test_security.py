"""Secrets never reach results, logs or predictions; nothing loads remote code."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from radbench.security import REDACTED, redact
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
