"""Any OpenAI-compatible chat-completions endpoint (GPT-4V-class APIs, vLLM, SGLang): model ``openai``.

Each request becomes one ``POST {base_url}/chat/completions`` with the images as base64 PNG
``image_url`` parts, in the order the task placed them. Exemplar turns become earlier user/assistant
messages, so few-shot prompts keep their images. Decoding is greedy (``temperature=0``) unless the
request's ``gen_kwargs`` say otherwise; ``max_new_tokens`` is sent as ``max_tokens``.

Why the failure handling looks the way it does: a run of thousands of paid requests must survive
rate limits, a flaky proxy and a server that sometimes answers garbage, without losing what already
finished and without retrying forever. So:

* 429, 5xx, timeouts, dropped connections and malformed JSON are retried with exponential backoff
  (``Retry-After`` honoured, capped), at most ``retries`` times; then the request fails alone
  (:class:`SampleError`: recorded, counted, retried on the next resume).
* Other 4xx answers (a too-large image, a bad parameter) fail that request at once; retrying them
  cannot help. 401/403 stop the run with one line, because a bad key fails every request.
* ``max_requests`` caps the HTTP attempts of the whole run; once spent, the remaining requests fail
  as samples, so a re-run with a larger budget resumes exactly those.
* Outcomes are remembered per request for the adapter's lifetime: when one request of a batch
  fails, the runner retries the batch one request at a time, and the finished ones are answered
  from memory instead of being paid for twice.

The API key is read from the environment variable named by ``api_key_env`` (``OPENAI_API_KEY`` by
default) and is only ever put in the ``Authorization`` header; it is redacted from every error
message and never appears in ``describe()``, predictions, results or logs.

Image policy (models behind an API take 2D images): a 3D volume ``(C, H, W, D)`` is sent as its
middle slice along the last axis, or as the slices ``slices=even:K|all`` picks (radbench's shared
:class:`~radbench.images.SlicePolicy`; each slice one image part, in depth order). 8-bit images keep
their values and windowed scans their window; anything else (CT in HU, 16-bit MR) is min-max scaled
to [0, 255] over the whole image or volume. One channel gives a greyscale PNG, three an RGB PNG.
The pixels are sent at their stored size: the endpoint resizes as its model needs.
"""

from __future__ import annotations

import base64
import io
import ipaddress
import json
import os
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import httpx
import numpy as np

from radbench import images
from radbench.errors import SampleError, UsageError
from radbench.models.args import ModelArgs
from radbench.models import http
from radbench.models.base import Adapter
from radbench.security import redact_url, redact_urls
from radbench.types import Request, Turn, stable_hash

DEFAULT_BASE_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class OpenAIArgs(ModelArgs):
    """``--model-args`` of the ``openai`` adapter; the field names are the constructor's parameters."""

    model: str | None = None  # the model name the endpoint serves
    base_url: str = DEFAULT_BASE_URL  # endpoint root, up to and including /v1
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key
    max_concurrency: int = field(default=4, metadata={"minimum": 1})  # parallel requests
    retries: int = field(default=5, metadata={"minimum": 0})  # retries per request after the first attempt
    timeout: float = field(default=120.0, metadata={"minimum": 0.001})  # seconds one HTTP attempt may take in all, connect to last byte
    backoff: float = field(default=1.0, metadata={"minimum": 0.0})  # first retry delay, doubled each retry
    max_backoff: float = field(default=60.0, metadata={"minimum": 0.0})  # cap on one retry delay in seconds
    max_requests: int | None = field(default=None, metadata={"minimum": 0})  # HTTP attempts for the whole run
    slices: str = "middle"  # which slices of a 3D volume are sent: middle, even:K or all
    revision: str | None = None  # a label for the served weights, when the endpoint does not report one
    token_param: str = "max_tokens"  # or max_completion_tokens (newer OpenAI models)

    def check(self, model: str) -> None:
        if not self.model:
            raise UsageError("model 'openai' needs --model-args model=NAME (and base_url=URL for a non-OpenAI endpoint)")


PASSTHROUGH_GEN_KWARGS = ("temperature", "top_p", "seed", "stop", "frequency_penalty", "presence_penalty")


# -- images -----------------------------------------------------------------------------------------


def planes_2d(loaded: images.LoadedImage, policy: images.SlicePolicy) -> list[np.ndarray]:
    """A read image or volume -> 2D uint8 planes ``(H, W)`` (one channel) or ``(H, W, 3)``.

    Intensities are scaled by the format's range (8-bit files keep their values, windowed scans
    their window), else min-max over the whole image or volume, so all slices of a study share one
    scale. A volume gives the slices ``policy`` picks (:class:`radbench.images.SlicePolicy`).
    """
    arr = loaded.array
    low, high = loaded.value_range or (float(arr.min()), float(arr.max()))
    unit = (arr - low) / (high - low) if high > low else np.zeros_like(arr)
    pixels = np.clip(np.rint(unit * 255.0), 0, 255).astype(np.uint8)
    stack = [pixels[..., i] for i in policy.indices(pixels.shape[-1])] if pixels.ndim == 4 else [pixels]
    out = []
    for plane in stack:
        if plane.shape[0] == 1:
            out.append(plane[0])
        elif plane.shape[0] == 3:
            out.append(np.ascontiguousarray(plane.transpose(1, 2, 0)))
        else:
            out.append(np.rint(plane.astype(np.float32).mean(axis=0)).astype(np.uint8))
    return out


def png_data_url(plane: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(plane).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# -- the adapter ------------------------------------------------------------------------------------


class _Transient(Exception):
    """A failure worth retrying (rate limit, server error, timeout, dropped connection, bad JSON)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class OpenAIAdapter(Adapter):
    """Chat completions over HTTP with bounded retries, a request budget and per-request memory."""

    name = "openai"
    # max_new_tokens is sent as max_tokens (or max_completion_tokens); the rest verbatim.
    gen_kwargs_honoured: frozenset[str] = frozenset({"max_new_tokens", *PASSTHROUGH_GEN_KWARGS})
    version = "1"

    def __init__(
        self,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 4,
        retries: int = 5,
        timeout: float = 120.0,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        max_requests: int | None = None,
        slices: str = "middle",
        revision: str | None = None,
        token_param: str = "max_tokens",
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UsageError(f"model 'openai': base_url {base_url!r} is not an http(s) URL")
        if token_param not in ("max_tokens", "max_completion_tokens"):
            raise UsageError(f"model 'openai': token_param must be max_tokens or max_completion_tokens, got {token_param!r}")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None
        if self._api_key is None and not _is_loopback(parsed.hostname) and parsed.hostname.endswith("openai.com"):
            raise UsageError(f"model 'openai': set the API key in the environment variable {api_key_env}")
        self.max_concurrency = max_concurrency
        self.max_batch_size = 4 * max_concurrency  # enough to keep every worker busy between store writes
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_requests = max_requests
        self.slices = images.SlicePolicy.parse(slices)
        self.token_param = token_param
        self.shown_url = redact_url(self.base_url)  # the only form of base_url that is ever recorded
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        # Loopback endpoints (a local vLLM, the tests' server) never go through an HTTP proxy.
        self._client = http.Client(self.base_url, headers, timeout, max_connections=max_concurrency,
                                   trust_env=not _is_loopback(parsed.hostname))
        self._lock = threading.Lock()
        self._attempts = 0
        self._memory: dict[str, tuple[bool, str]] = {}
        self._served: set[str] = set()
        self.revision = revision if revision is not None else self._probe_revision()

    @classmethod
    def from_args(cls, **model_args: str) -> Adapter:
        if any(k.lower() in ("api_key", "key", "token") for k in model_args):
            raise UsageError("model 'openai': never pass the key in --model-args; set api_key_env=VAR and export VAR")
        return cls(**asdict(OpenAIArgs.parse(cls.name, model_args)))

    # -- identity ---------------------------------------------------------------------------------

    def _probe_revision(self) -> str | None:
        """What the endpoint says about the served weights (``GET /models``), outside the budget.

        vLLM and SGLang report the weights' path as ``root``; OpenAI's dated model names are their
        own revision. Only stable fields are used (vLLM's ``created`` is the request time). An
        endpoint without ``/models`` gives ``None``, and the fingerprint is the model name alone.
        An endpoint that cannot be reached, or refuses the key, stops here with one line instead
        of failing every sample of the run.
        """
        last = ""
        for attempt in range(self.retries + 1):
            try:
                status, raw, headers = self._client.request("GET", "/models")
            except http.RedirectRefused as exc:
                raise UsageError(f"model 'openai': {self.shown_url}: {exc}") from None
            except (TimeoutError, httpx.HTTPError, http.ResponseTooLarge, OSError) as exc:
                last = self._redact(f"{exc.__class__.__name__}: {exc}")
            else:
                if status in (401, 403):
                    raise UsageError(f"model 'openai': {self.shown_url} refused the key from ${self.api_key_env} (HTTP {status})")
                if status != 429 and status < 500:
                    return _served_root(raw, self.model) if status == 200 else None
                last = f"HTTP {status}"
            if attempt < self.retries:
                time.sleep(min(self.max_backoff, self.backoff * (2**attempt)))
        raise UsageError(f"model 'openai': cannot reach {self.shown_url} ({last})")

    def fingerprint(self) -> str:
        return stable_hash(["openai", self.model, self.revision])

    def describe(self) -> dict[str, Any]:
        parsed = urllib.parse.urlsplit(self.base_url)  # drops any user:password@ and query string
        port = f":{parsed.port}" if parsed.port else ""
        return {
            **super().describe(),
            "endpoint": f"{parsed.scheme}://{parsed.hostname}{port}{parsed.path}",
            "model_name": self.model,
            "revision": self.revision,
            "served_models": sorted(self._served),
            "http_requests": self._attempts,
        }

    # -- requests ---------------------------------------------------------------------------------

    def _content(self, turn: Turn) -> list[dict[str, Any]]:
        parts: list[dict[str, Any]] = []
        for segment in turn.segments:
            if segment.image is not None:
                for plane in planes_2d(images.read(segment.image), self.slices):
                    parts.append({"type": "image_url", "image_url": {"url": png_data_url(plane)}})
            elif segment.text:
                parts.append({"type": "text", "text": segment.text})
        return parts

    def payload(self, request: Request) -> dict[str, Any]:
        """The JSON body for one request (public so tests and users can inspect what is sent)."""
        messages: list[dict[str, Any]] = []
        for turn in request.turns:
            messages.append({"role": "user", "content": self._content(turn)})
            if turn.answer is not None:
                messages.append({"role": "assistant", "content": turn.answer})
        body: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": 0}
        gen = request.gen_kwargs
        if gen.get("max_new_tokens") is not None:
            body[self.token_param] = int(gen["max_new_tokens"])
        for key in PASSTHROUGH_GEN_KWARGS:
            if key in gen:
                body[key] = gen[key]
        return body

    def generate(self, requests: Sequence[Request]) -> list[str]:
        if not requests:
            return []
        if len(requests) == 1:
            return [self._one(requests[0])]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            futures = [pool.submit(self._one, r) for r in requests]
            outcomes: list[str | BaseException] = []
            for future in futures:
                try:
                    outcomes.append(future.result())
                except SampleError as exc:
                    outcomes.append(exc)
                except BaseException:
                    for other in futures:
                        other.cancel()
                    raise
        failed = [(r.sample_id, o) for r, o in zip(requests, outcomes) if isinstance(o, BaseException)]
        if failed:
            # The runner now retries one request at a time; the finished ones come from memory.
            raise SampleError(f"{len(failed)} of {len(requests)} requests failed; first: {failed[0][1]}")
        return [o for o in outcomes if isinstance(o, str)]

    def _one(self, request: Request) -> str:
        body = json.dumps(self.payload(request), ensure_ascii=False).encode("utf-8")
        key = stable_hash([body.decode("utf-8")])
        with self._lock:
            remembered = self._memory.get(key)
        if remembered is None:
            try:
                remembered = (True, self._post_with_retries(body))
            except SampleError as exc:
                remembered = (False, str(exc))
            with self._lock:
                self._memory[key] = remembered
        ok, value = remembered
        if not ok:
            raise SampleError(value)
        return value

    def _post_with_retries(self, body: bytes) -> str:
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            with self._lock:
                if self.max_requests is not None and self._attempts >= self.max_requests:
                    raise SampleError(
                        f"request budget exhausted (max_requests={self.max_requests}); last error: {last}; "
                        "re-run with a larger budget to retry this sample"
                    )
                self._attempts += 1
            try:
                return self._attempt(body)
            except _Transient as exc:
                last = str(exc)
                if attempt == self.retries:
                    break
                delay = min(self.max_backoff, self.backoff * (2**attempt))
                if exc.retry_after is not None:
                    delay = min(self.max_backoff, max(delay, exc.retry_after))
                time.sleep(delay)
        raise SampleError(f"endpoint failed after {self.retries + 1} attempts: {last}")

    def _attempt(self, body: bytes) -> str:
        try:
            status, raw, headers = self._client.request("POST", "/chat/completions", body)
        except TimeoutError as exc:
            raise _Transient(f"timed out after {self.timeout}s") from exc
        except http.RedirectRefused as exc:
            # Every request would be redirected the same way: stop the run with one line.
            raise UsageError(f"model 'openai': {self.shown_url}: {exc}") from None
        except (httpx.HTTPError, http.ResponseTooLarge, OSError) as exc:
            raise _Transient(f"connection failed ({self._redact(exc.__class__.__name__ + ': ' + str(exc))})") from exc
        if status == 200:
            try:
                return self._parse(raw)
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                raise _Transient(f"malformed response ({exc.__class__.__name__}: {self._redact(str(exc))[:200]})") from exc
        detail = self._redact(raw.decode("utf-8", "replace").strip())[:300]
        if status == 429 or status == 408 or status >= 500:
            raise _Transient(f"HTTP {status}: {detail}", _retry_after(headers.get("Retry-After")))
        if status in (401, 403):
            raise UsageError(f"model 'openai': {self.shown_url} refused the key from ${self.api_key_env} (HTTP {status})")
        raise SampleError(f"HTTP {status} from {self.shown_url}: {detail}")

    def _parse(self, raw: bytes) -> str:
        data = json.loads(raw.decode("utf-8"))
        choice = data["choices"][0]
        served = data.get("model")
        if isinstance(served, str):
            fingerprint = data.get("system_fingerprint")
            with self._lock:
                self._served.add(served if not fingerprint else f"{served} ({fingerprint})")
        content = choice["message"].get("content")
        if content is None:  # an empty completion (or a refusal with no text) is an empty prediction
            return ""
        if isinstance(content, list):  # some servers return content parts
            return "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if not isinstance(content, str):
            raise TypeError(f"message content is {type(content).__name__}, not text")
        return content

    def _redact(self, text: str) -> str:
        text = redact_urls(text)
        return text.replace(self._api_key, "***") if self._api_key else text


def _served_root(raw: bytes, model: str) -> str | None:
    """The ``root`` (weights path) that a vLLM/SGLang ``/models`` listing gives for ``model``."""
    try:
        entries = json.loads(raw.decode("utf-8")).get("data", [])
    except (ValueError, AttributeError):
        return None
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("id") == model:
            root = entry.get("root")
            return str(root) if root and root != model else None
    return None


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds form only; dates are ignored)."""
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
