"""The leaderboard page in a real headless browser (Debian's ``chromium``): loads without console
errors, sorts when a header is clicked, filters, renders hostile names as text, and is screenshotted.

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so the test needs no websocket library
and opens no port. Where chromium is not installed (``.ci/run`` installs it) the test is skipped
with a message saying so.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from radbench.cli import main
from radbench.runner import RunConfig, run

pytestmark = pytest.mark.slow  # starts a headless browser

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="browser test skipped: Debian's chromium is not installed (`apt-get install -y chromium`; .ci/run "
           "installs it where apt works)",
)
EVIL = "<script>alert(1)</script>"
TIMEOUT = 60.0


class DevTools:
    """A minimal DevTools-protocol client over chromium's debugging pipe."""

    def __init__(self, profile: Path) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # runs in the child: the pipe must be fds 3 (commands) and 4 (replies)
            read, write = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _read_message(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_browser], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("chromium did not answer over the DevTools pipe")
            chunk = os.read(self._from_browser, 1 << 20)
            if not chunk:
                raise RuntimeError(f"chromium closed the DevTools pipe (exit code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict[str, Any] | None = None, browser_level: bool = False) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session and not browser_level:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._read_message(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._read_message(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def open(self, url: str) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser_level=True)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser_level=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False})
        self.events.clear()
        self.call("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def problems(self) -> list[str]:
        """Console errors, uncaught exceptions, error log entries (CSP violations) and dialogs."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Runtime.exceptionThrown":
                out.append(f"exception: {params['exceptionDetails']}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(f"log: {params['entry'].get('text')}")
            elif method == "Page.javascriptDialogOpening":
                out.append(f"dialog: {params.get('message')}")
        return out

    def screenshot(self, path: Path) -> None:
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1},
        })
        path.write_bytes(base64.b64decode(shot["data"]))

    def close(self) -> None:
        try:
            self.call("Browser.close", browser_level=True)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[DevTools]:
    client = DevTools(tmp_path / "profile")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo baselines on two tasks plus a hostile model name, built and rendered by the CLI."""
    root = tmp_path_factory.mktemp("browser")
    for model, task in [("majority", "diagnosis"), ("retrieval", "diagnosis"), ("majority", "report"),
                        ("retrieval", "report")]:
        run(RunConfig(model=model, task=task, dataset="demo", output=root / "runs" / f"{model}-{task}", quiet=True))
    evil = root / "runs" / "evil-report"
    shutil.copytree(root / "runs" / "majority-report", evil)
    results = json.loads((evil / "results.json").read_text())
    results["model"]["name"] = EVIL
    (evil / "results.json").write_text(json.dumps(results))
    assert main(["leaderboard", "build", str(root / "runs"), "--output", str(root / "leaderboard.json")]) == 0
    assert main(["leaderboard", "html", str(root / "leaderboard.json"), "--output", str(root / "index.html")]) == 0
    return root / "index.html"


ORDER = "Array.from(document.querySelectorAll('#{g} tbody tr')).map(r => r.cells[{c}].getAttribute('data-v'))"


def test_page_loads_sorts_filters_and_escapes(browser: DevTools, page: Path, tmp_path: Path) -> None:
    browser.open(page.as_uri())
    assert browser.js("document.title") == "radbench leaderboard"
    assert browser.js("document.scripts.length") == 1

    # Sorting: the report group has three entries; click "model", then click it again.
    group = browser.js("document.querySelectorAll('section.group')[1].id")
    headers = browser.js(f"Array.from(document.querySelectorAll('#{group} thead th')).map(t => t.textContent)")
    model_col, bleu_col = headers.index("model"), headers.index("bleu4")
    click = f"document.querySelectorAll('#{group} thead th')[{{}}].querySelector('button').click()"
    browser.js(click.format(model_col))
    names = browser.js(ORDER.format(g=group, c=model_col))
    assert names == sorted(names, key=str.lower) and len(names) == 3
    browser.js(click.format(model_col))
    assert browser.js(ORDER.format(g=group, c=model_col)) == sorted(names, key=str.lower, reverse=True)
    browser.js(click.format(bleu_col))
    values = [float(v) for v in browser.js(ORDER.format(g=group, c=bleu_col))]
    assert values == sorted(values, reverse=True)
    assert browser.js(f"document.querySelectorAll('#{group} thead th')[{bleu_col}].getAttribute('aria-sort')") == \
        "descending"

    # Filters: only the diagnosis group stays visible.
    choose = ("{{ const s = document.getElementById('filter-task'); s.value = '{}';"
              " s.dispatchEvent(new Event('change')); }}")
    browser.js(choose.format("diagnosis"))
    assert browser.js("Array.from(document.querySelectorAll('section.group')).filter(g => !g.hidden).length") == 1
    assert browser.js("document.getElementById('filter-status').textContent") == "1 of 2 groups shown"
    browser.js(choose.format(""))
    assert browser.js("document.getElementById('filter-status').textContent") == "2 of 2 groups shown"

    # The hostile name is text, and its provenance opens on click.
    summaries = browser.js("Array.from(document.querySelectorAll('td.model summary')).map(s => s.textContent)")
    assert EVIL in summaries
    browser.js("document.querySelector('td.model details').open = true")
    assert "weights" in browser.js("document.querySelector('td.model dl.prov').textContent")

    shot = tmp_path / "leaderboard.png"
    browser.screenshot(shot)
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert browser.problems() == []


def test_console_errors_would_be_caught(browser: DevTools, page: Path, tmp_path: Path) -> None:
    """The check above is only as good as its detector: a tampered script must register as an error."""
    tampered = tmp_path / "tampered.html"
    tampered.write_text(page.read_text().replace('"use strict";', '"use strict"; window.x = 1;', 1))
    browser.open(tampered.as_uri())
    problems = browser.problems()
    assert problems and any("Content Security Policy" in p for p in problems), problems
