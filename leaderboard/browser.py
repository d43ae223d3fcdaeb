"""Headless Chromium for the leaderboard page: does it fit the window, and what does it look like?

``python -m radbench.leaderboard.browser runs/demo/index.html`` (``make demo`` runs it) writes
``leaderboard-1400.png`` and ``leaderboard-800.png`` next to the page and says whether any part of it
needs a horizontal scrollbar at those widths; where Debian's ``chromium`` is not installed it says so
in one line and does nothing. ``tests/test_leaderboard_browser.py`` drives the same client and fails
on overflow.

The browser is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages separated by NUL bytes on file descriptors 3 and 4), so no websocket library is needed and
no port is opened.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TIMEOUT = 60.0
WIDTHS = (1400, 800)

# Runs in the page: the document's width against the window's (less its vertical scrollbar), then every metric panel in turn
# (each chooser's radio buttons are checked one by one), naming each table wrapper whose content is
# wider than its box, i.e. columns behind a scrollbar. The first panel is checked again at the end.
OVERFLOW_PROBE = """
(() => {
  const wide = [];
  const visible = (el) => el.getClientRects().length > 0;
  const scan = (where) => document.querySelectorAll(".scroll").forEach((el) => {
    if (visible(el) && el.scrollWidth > el.clientWidth + 1) {
      wide.push(where + " " + el.closest("section").id + ": " + el.scrollWidth + " px in " + el.clientWidth);
    }
  });
  scan("first panel");
  document.querySelectorAll(".chooser").forEach((chooser) => {
    const inputs = chooser.querySelectorAll(":scope > input");
    inputs.forEach((input) => { input.checked = true; scan("panel " + input.id); });
    if (inputs.length) { inputs[0].checked = true; }
  });
  const root = document.documentElement;  // clientWidth: the window less any vertical scrollbar
  return {viewport: root.clientWidth, document: root.scrollWidth, wide: wide};
})()
"""


def find_chromium() -> str | None:
    """Debian's ``chromium`` (``apt-get install -y chromium``), or None."""
    return shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class DevTools:
    """A minimal DevTools-protocol client over chromium's debugging pipe."""

    def __init__(self, profile: Path, chromium: str) -> None:
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()

        def wire() -> None:  # runs in the child: the pipe must be fds 3 (commands) and 4 (replies)
            read, write = os.dup(to_browser_r), os.dup(from_browser_w)
            os.dup2(read, 3)
            os.dup2(write, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
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

    def open(self, url: str, width: int = 1280) -> None:
        target = self.call("Target.createTarget", {"url": "about:blank"}, browser_level=True)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True},
                                 browser_level=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False})
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


def overflow(client: DevTools) -> list[str]:
    """What needs a horizontal scrollbar in the open page at its window width; empty when it all fits."""
    found = client.js(OVERFLOW_PROBE)
    problems = list(found["wide"])
    if found["document"] > found["viewport"]:
        problems.insert(0, f"the page is {found['document']} px wide in a {found['viewport']} px window")
    return problems


def check(page: Path, out_dir: Path, chromium: str, widths: tuple[int, ...] = WIDTHS) -> dict[int, list[str]]:
    """Screenshot ``page`` at each width into ``out_dir/leaderboard-WIDTH.png``; the overflow found at each."""
    found: dict[int, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="radbench-chromium-") as profile:
        client = DevTools(Path(profile), chromium)
        try:
            for width in widths:
                client.open(page.resolve().as_uri(), width)
                found[width] = overflow(client)
                client.screenshot(out_dir / f"leaderboard-{width}.png")
        finally:
            client.close()
    return found


def main(argv: list[str] | None = None) -> int:
    """Screenshots next to the page; exit 0 also when chromium is absent (one line says so)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m radbench.leaderboard.browser PAGE.html", file=sys.stderr)
        return 2
    page = Path(args[0])
    if not page.is_file():
        print(f"radbench: error: {page}: file not found", file=sys.stderr)
        return 2
    chromium = find_chromium()
    if chromium is None:
        print("leaderboard screenshots skipped: chromium is not installed (apt-get install -y chromium)")
        return 0
    found = check(page, page.parent, chromium)
    for width, problems in found.items():
        shot = page.parent / f"leaderboard-{width}.png"
        verdict = "fits" if not problems else "OVERFLOWS: " + "; ".join(problems)
        print(f"leaderboard at {width} px: {verdict} ({shot})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
