"""A real OpenAI-compatible HTTP server on 127.0.0.1 for the API adapter's tests (stdlib only).

Answers are a deterministic function of the request: ``"{n} image(s): "`` plus the words of the last
user text part in reverse order, cut to ``max_tokens`` words. A marker in that text injects faults,
per distinct request body, for the first ``N`` attempts (then it answers normally):

``[429xN]`` rate limit with ``Retry-After: 0`` · ``[500xN]`` server error · ``[slowxN]`` sleeps past the
client timeout · ``[badjsonxN]`` a 200 with a body that is not JSON · ``[dropxN]`` closes the connection
without answering · ``[400]`` always a bad request (echoing the key) · ``[empty]`` / ``[null]`` an empty / null content.

Server-wide faults: ``redirect = (status, location)`` answers every request of a method in
``redirect_methods`` with that redirect, except a request for ``location`` itself;
``prefix = "/old"`` serves the API under ``/old/v1`` as well; ``trickle_seconds`` sends each answer
one byte at a time (status line and headers included), that many seconds apart. Every request
path (query string included) is kept in ``paths`` and its headers in ``headers``.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT = re.compile(r"\[(429|500|slow|badjson|drop)x(\d+)\]")


class FakeOpenAI:
    """Start with ``with FakeOpenAI() as server:``; ``server.base_url`` ends in ``/v1``."""

    def __init__(self, model: str = "fake-vlm", root: str | None = "/weights/fake-vlm-r1", slow_seconds: float = 1.0,
                 require_key: str | None = None) -> None:
        self.model = model
        self.root = root
        self.slow_seconds = slow_seconds
        self.require_key = require_key
        self.empty = False  # when set, every completion is empty (the conformance suite's silenced model)
        self.attempts: Counter[str] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.redirect: tuple[int, str] | None = None
        self.redirect_methods: tuple[str, ...] = ("GET", "POST")
        self.trickle_seconds: float | None = None
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def answer(self, body: dict[str, Any]) -> str | None:
        last = body["messages"][-1]["content"]
        texts = [p["text"] for p in last if p.get("type") == "text"]
        n_images = sum(1 for m in body["messages"] for p in m["content"] if isinstance(p, dict) and p.get("type") == "image_url")
        text = texts[-1] if texts else ""
        if "[null]" in text:
            return None
        if "[empty]" in text or self.empty:
            return ""
        words = [f"{n_images}", "image(s):"] + text.split()[::-1]
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        return " ".join(words[:limit] if limit is not None else words)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, payload: bytes, extra: dict[str, str] | None = None) -> None:
                if server.trickle_seconds is not None:
                    return self._trickle(status, payload)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _trickle(self, status: int, payload: bytes) -> None:
                head = f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
                try:
                    for byte in head.encode() + payload:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(server.trickle_seconds or 0)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def _route(self, method: str) -> str | None:
                """The API path asked for (query and prefix removed), or None when a redirect was sent."""
                with server.lock:
                    server.paths.append(self.path)
                    server.headers.append(dict(self.headers.items()))
                redirect = server.redirect
                if redirect is not None and method in server.redirect_methods and self.path != redirect[1]:
                    status, location = redirect
                    self._send(status, b"", {"Location": location})
                    return None
                path = self.path.split("?", 1)[0]
                return path[len("/old"):] if path.startswith("/old/") else path

            def _authorised(self) -> bool:
                if server.require_key is None:
                    return True
                return self.headers.get("Authorization") == f"Bearer {server.require_key}"

            def do_GET(self) -> None:
                path = self._route("GET")
                if path is None:
                    return None
                if not self._authorised():
                    return self._send(401, b'{"error": {"message": "bad key"}}')
                if path != "/v1/models":
                    return self._send(404, b'{"error": "not found"}')
                entry = {"id": server.model, "object": "model", "created": int(time.time())}
                if server.root:
                    entry["root"] = server.root
                self._send(200, json.dumps({"object": "list", "data": [entry]}).encode())

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self._route("POST")
                if path is None:
                    return None
                if not self._authorised():
                    return self._send(401, b'{"error": {"message": "bad key"}}')
                if path != "/v1/chat/completions":
                    return self._send(404, b'{"error": "not found"}')
                body = json.loads(raw)
                with server.lock:
                    server.bodies.append(body)
                    server.attempts[raw.decode()] += 1
                    attempt = server.attempts[raw.decode()]
                texts = [p.get("text", "") for p in body["messages"][-1]["content"] if isinstance(p, dict)]
                marker = " ".join(texts)
                if "[400]" in marker:
                    # Echoes the Authorization header, as some real APIs echo a key: the adapter must redact it.
                    message = f"image too large (sent {self.headers.get('Authorization')})"
                    return self._send(400, json.dumps({"error": {"message": message}}).encode())
                fault = FAULT.search(marker)
                if fault and attempt <= int(fault.group(2)):
                    kind = fault.group(1)
                    if kind == "429":
                        return self._send(429, b'{"error": "slow down"}', {"Retry-After": "0"})
                    if kind == "500":
                        return self._send(500, b'{"error": "boom"}')
                    if kind == "slow":
                        time.sleep(server.slow_seconds)
                    elif kind == "badjson":
                        return self._send(200, b'{"choices": [{"message": ')
                    elif kind == "drop":
                        self.close_connection = True
                        self.connection.shutdown(2)
                        return
                content = server.answer(body)
                reply = {
                    "id": "cmpl-1",
                    "object": "chat.completion",
                    "model": f"{server.model}-2024-01-01",
                    "system_fingerprint": "fp_test",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                }
                try:
                    self._send(200, json.dumps(reply).encode())
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

        return Handler


QUESTIONS = (
    "is there an effusion",
    "[429x2] which side",
    "[500x1] is the heart enlarged",
    "[slowx1] any nodule",
    "[badjsonx1] any fracture",
    "[dropx1] any pneumothorax",
    "[400] describe the image",
    "[500x99] what modality",
    "[empty] anything else",
)


class FaultDataset:
    """One VQA sample per question above, each on ``x.png`` in ``--data-root`` (registered by tests)."""

    name = "api-faults"
    tasks = ("vqa",)
    description = "fault-injection questions for the API adapter tests"
    is_demo = True

    def load(self, task: str, split: str, data_root: str | None) -> list:
        from radbench.types import ImageRef, Sample

        if split != "test":
            return []
        return [
            Sample(id=f"q{i}", dataset=self.name, task=task, references=("yes",), question=q,
                   images=(ImageRef("x.png", root=data_root),))
            for i, q in enumerate(QUESTIONS)
        ]
