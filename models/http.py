"""The HTTP client of the API adapters: one connection pool, a total deadline, no credential leaks.

Why not ``urllib`` or a bare ``httpx.Client``:

* **Deadline.** A socket timeout bounds each read, not the response: a server that sends one byte
  every two seconds keeps a ``timeout=3`` request alive forever. Here every connect, read and
  write of one request gets only what is left of that request's deadline, so the whole exchange
  (headers included) ends within ``timeout`` seconds.
* **Redirects.** ``urllib`` re-sends the ``Authorization`` header to wherever a 302/307 points.
  Redirects are never followed automatically: one to the same origin (scheme, host, port) is
  followed at most :data:`MAX_REDIRECTS` times; one to another origin is refused, since the key
  would go with it.
* **One pool.** Concurrent requests share keep-alive connections instead of reconnecting each time.

Secrets in the configured URL (``?api-key=``, ``user:password@``) are sent as configured but only
ever recorded through :func:`radbench.security.redact_url`.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any, Iterable

import httpcore
import httpx

from radbench.security import redact_url

MAX_REDIRECTS = 5
MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # an answer larger than this is an error, never read whole


class RedirectRefused(Exception):
    """The endpoint redirected to another origin (or in a way that would drop the request body)."""


class ResponseTooLarge(Exception):
    """The response body exceeded :data:`MAX_RESPONSE_BYTES`."""


_deadline = threading.local()


def _remaining(timeout: float | None, exc: type[Exception]) -> float | None:
    """``timeout`` cut to what is left of this thread's current deadline (raises ``exc`` when spent)."""
    deadline = getattr(_deadline, "at", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc("request deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every read and write stops at the calling thread's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname,
                                                     _remaining(timeout, httpcore.ConnectTimeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's own socket backend, with every stream it opens bounded by the deadline."""

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, _remaining(timeout, httpcore.ConnectTimeout),
                                         local_address, socket_options)
        return _DeadlineStream(stream)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.connect_unix_socket(path, _remaining(timeout, httpcore.ConnectTimeout),
                                                               socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport(max_connections: int, trust_env: bool) -> httpx.HTTPTransport:
    """httpx's transport with its pool rebuilt on the deadline backend.

    httpx does not take a network backend, so the pool it built is replaced by an equal one that
    has it (proxied pools keep httpx's own, which still has per-operation timeouts).
    """
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_connections=max_connections), trust_env=trust_env)
    if type(transport._pool) is httpcore.ConnectionPool:
        old = transport._pool
        transport._pool = httpcore.ConnectionPool(
            ssl_context=old._ssl_context, max_connections=max_connections,
            max_keepalive_connections=old._max_keepalive_connections, keepalive_expiry=old._keepalive_expiry,
            network_backend=_DeadlineBackend(),
        )
        old.close()
    return transport


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return (url.scheme, url.host, url.port or {"http": 80, "https": 443}.get(url.scheme))


class Client:
    """``request(method, path, body)`` against ``base_url`` with a total deadline per call.

    ``base_url`` may carry a query string (Azure's ``?api-version=``); it is kept on every request,
    after the path. Loopback endpoints never go through an environment proxy.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float, max_connections: int,
                 trust_env: bool = True) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self._root = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self._query = parts.query
        self.timeout = timeout
        self._client = httpx.Client(
            headers=headers, follow_redirects=False, trust_env=trust_env, timeout=httpx.Timeout(timeout),
            transport=_transport(max_connections, trust_env),
        )

    def url(self, path: str) -> str:
        return self._root + path + (f"?{self._query}" if self._query else "")

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes, httpx.Headers]:
        """One exchange, redirects to the same origin included, within ``timeout`` seconds in all.

        Raises :class:`TimeoutError` when the deadline passes, :class:`RedirectRefused` for a redirect
        that would carry the key elsewhere, :class:`ResponseTooLarge`, and ``httpx.HTTPError`` for
        connection failures.
        """
        _deadline.at = time.monotonic() + self.timeout
        try:
            url = httpx.URL(self.url(path))
            for _ in range(MAX_REDIRECTS + 1):
                status, raw, headers = self._once(method, url, body)
                if status not in (301, 302, 303, 307, 308) or "location" not in headers:
                    return status, raw, headers
                target = url.join(headers["location"])
                if _origin(target) != _origin(url):
                    raise RedirectRefused(f"HTTP {status} redirect to another origin "
                                          f"({redact_url(str(target))}); it is not followed, so the key stays here")
                if method != "GET" and status not in (307, 308):
                    raise RedirectRefused(f"HTTP {status} redirect of a {method} would drop the request body")
                url = target
            raise RedirectRefused(f"more than {MAX_REDIRECTS} redirects")
        except (httpx.TimeoutException, httpcore.TimeoutException) as exc:
            raise TimeoutError(f"no complete answer within {self.timeout}s") from exc
        finally:
            _deadline.at = None

    def _once(self, method: str, url: httpx.URL, body: bytes | None) -> tuple[int, bytes, httpx.Headers]:
        with self._client.stream(method, url, content=body) as response:
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > MAX_RESPONSE_BYTES:
                    raise ResponseTooLarge(f"response larger than {MAX_RESPONSE_BYTES} bytes")
                chunks.append(chunk)
            return response.status_code, b"".join(chunks), response.headers

    def close(self) -> None:
        self._client.close()
