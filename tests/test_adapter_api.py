"""The OpenAI-compatible adapter against a real HTTP server on 127.0.0.1 (tests/support/fake_openai.py).

Every fault (429, 5xx, timeout, malformed JSON, dropped connection, 4xx) is either retried or recorded
as that sample's failure; none loses finished predictions, none loops without bound, and the key
never reaches a file.
"""

from __future__ import annotations

import base64
import io
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radbench import registry
from radbench.images import LoadedImage, SlicePolicy
from radbench.errors import SampleError, UsageError
from radbench.models.openai_api import OpenAIAdapter, planes_2d
from radbench.runner import RunConfig, run
from radbench.store import PREDICTIONS, read_jsonl
from radbench.types import ImageRef, Request, Segment, Turn
from tests.support.fake_openai import QUESTIONS, FakeOpenAI

FAST = {"timeout": "0.3", "backoff": "0", "retries": "3"}


@pytest.fixture()
def server():
    with FakeOpenAI(slow_seconds=1.0) as srv:
        yield srv


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api-images")
    Image.fromarray((np.arange(24 * 32).reshape(24, 32) % 256).astype(np.uint8)).convert("RGB").save(root / "x.png")
    np.save(root / "v.npy", np.linspace(-1000, 1000, 1 * 8 * 8 * 6, dtype=np.float32).reshape(1, 8, 8, 6))
    return root


def adapter(srv: FakeOpenAI, **extra: str) -> OpenAIAdapter:
    args = {"base_url": srv.base_url, "model": srv.model, **FAST, **extra}
    built = OpenAIAdapter.from_args(**args)
    assert isinstance(built, OpenAIAdapter)
    return built


def request(text: str, *images: ImageRef, sid: str = "s", max_new: int | None = 32) -> Request:
    segments = tuple(Segment(image=i) for i in images) + (Segment(text=text),)
    gen = {} if max_new is None else {"max_new_tokens": max_new}
    return Request(sample_id=sid, turns=(Turn(segments, sample_id=sid),), gen_kwargs=gen)


def test_payload_has_base64_png_parts_in_order_and_greedy_settings(server: FakeOpenAI, images: Path) -> None:
    a = adapter(server)
    png = ImageRef("x.png", root=str(images))
    exemplar = Turn((Segment(image=png), Segment(text="example q")), answer="example a", sample_id="e")
    query = Turn((Segment(image=png), Segment(text="what is it")), sample_id="q")
    body = a.payload(Request("q", (exemplar, query), gen_kwargs={"max_new_tokens": 7, "seed": 3}))
    assert body["model"] == "fake-vlm" and body["temperature"] == 0 and body["max_tokens"] == 7 and body["seed"] == 3
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == "example a"
    parts = body["messages"][2]["content"]
    assert [p["type"] for p in parts] == ["image_url", "text"]
    url = parts[0]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (32, 24) and decoded.mode == "RGB"
    assert a.generate([Request("q", (exemplar, query), gen_kwargs={"max_new_tokens": 4})]) == ["2 image(s): it is"]


def test_volume_slice_policy(server: FakeOpenAI, images: Path) -> None:
    vol = ImageRef("v.npy", kind="3d", root=str(images))
    one = adapter(server).payload(request("q", vol))["messages"][0]["content"]
    three = adapter(server, slices="even:3").payload(request("q", vol))["messages"][0]["content"]
    assert [p["type"] for p in one] == ["image_url", "text"]
    assert [p["type"] for p in three] == ["image_url"] * 3 + ["text"]
    volume = np.tile(np.linspace(-1000, 1000, 6, dtype=np.float32), (1, 8, 8, 1))  # brighter with depth
    planes = planes_2d(LoadedImage(volume), SlicePolicy("even", 3))
    assert len(planes) == 3 and all(p.shape == (8, 8) and p.dtype == np.uint8 for p in planes)
    assert planes[0].max() < planes[1].min() <= planes[1].max() < planes[2].min()  # one window, depth order
    eight_bit = LoadedImage(np.full((3, 4, 4), 200.0, dtype=np.float32), value_range=(0.0, 255.0))
    assert planes_2d(eight_bit, SlicePolicy())[0].max() == 200  # 8-bit intensities are kept


@pytest.mark.parametrize("marker", ["[429x2]", "[500x1]", "[slowx1]", "[badjsonx1]", "[dropx1]"])
def test_transient_faults_are_retried(server: FakeOpenAI, marker: str) -> None:
    a = adapter(server)
    out = a.generate([request(f"{marker} left side", max_new=8)])
    assert out == [f"0 image(s): side left {marker}"]
    assert a.describe()["http_requests"] >= 2


def test_persistent_failures_become_sample_errors_within_the_retry_bound(server: FakeOpenAI) -> None:
    a = adapter(server, retries="2")
    started = time.monotonic()
    with pytest.raises(SampleError, match="after 3 attempts: HTTP 500"):
        a.generate([request("[500x99] q")])
    with pytest.raises(SampleError, match="HTTP 400"):
        a.generate([request("[400] q")])
    assert a.describe()["http_requests"] == 3 + 1  # a 400 is never retried
    assert time.monotonic() - started < 10


def test_empty_and_null_content_are_empty_predictions(server: FakeOpenAI) -> None:
    assert adapter(server).generate([request("[empty] q"), request("[null] q")]) == ["", ""]


def test_failed_batch_is_retried_alone_from_memory(server: FakeOpenAI) -> None:
    a = adapter(server, retries="1", max_concurrency="3")
    batch = [request("good one", sid="a"), request("[500x99] bad", sid="b"), request("good two", sid="c")]
    with pytest.raises(SampleError, match="1 of 3 requests failed"):
        a.generate(batch)
    spent = a.describe()["http_requests"]
    assert spent == 1 + 2 + 1
    assert a.generate([batch[0]]) == ["0 image(s): one good"]
    with pytest.raises(SampleError):
        a.generate([batch[1]])
    assert a.describe()["http_requests"] == spent  # answered from memory, nothing paid twice


def test_request_budget_bounds_the_run(server: FakeOpenAI) -> None:
    a = adapter(server, max_requests="3", retries="5")
    with pytest.raises(SampleError, match="request budget exhausted"):
        a.generate([request("[500x99] q")])
    with pytest.raises(SampleError, match="request budget exhausted"):
        a.generate([request("fine")])
    assert a.describe()["http_requests"] == 3 and len(server.bodies) == 3


def test_end_to_end_run_records_failures_and_keeps_the_key_out_of_files(
    server: FakeOpenAI, images: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image as PILImage

    key = "sk-test-SECRET-0123456789"
    server.require_key = key
    monkeypatch.setenv("RB_TEST_KEY", key)
    monkeypatch.setitem(registry.BUILTIN["datasets"], "api-faults", "tests.support.fake_openai:FaultDataset")
    data = tmp_path / "data"
    data.mkdir()
    PILImage.open(images / "x.png").save(data / "x.png")
    out = tmp_path / "run"
    args = f"base_url={server.base_url},model=fake-vlm,api_key_env=RB_TEST_KEY,timeout=0.3,backoff=0,retries=2,max_concurrency=3"
    config = RunConfig(model="openai", task="vqa", dataset="api-faults", data_root=str(data), model_args=args,
                       output=out, quiet=True)
    res = run(config)
    records = {r["id"]: r for r in read_jsonl(out / PREDICTIONS)[0]}
    assert len(records) == len(QUESTIONS)
    failed = {i for i, r in records.items() if r["error"]}
    assert failed == {f"q{QUESTIONS.index('[400] describe the image')}", f"q{QUESTIONS.index('[500x99] what modality')}"}
    assert res["failures"]["count"] == 2
    assert records["q0"]["prediction"] == "1 image(s): effusion an there is"
    empty = records[f"q{QUESTIONS.index('[empty] anything else')}"]
    assert empty["prediction"] == "" and empty["error"] is None
    assert all(h.get("Authorization") == f"Bearer {key}" for h in server.headers)
    for path in out.rglob("*"):
        if path.is_file():
            assert key not in path.read_text(errors="replace"), path
    assert "***" in records[f"q{QUESTIONS.index('[400] describe the image')}"]["error"]
    assert res["model"]["served_models"] == ["fake-vlm-2024-01-01 (fp_test)"]

    # Resume: only the two failed samples are sent again, and nothing finished is lost.
    before = len(server.bodies)
    again = run(config)
    assert again["timing"]["generated_now"] == 2 and again["timing"]["resumed"] == len(QUESTIONS) - 2
    assert len(server.bodies) - before == 1 + 3  # the 400 once, the 500 three times


def test_key_errors_stop_the_run_with_one_line(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    server.require_key = "right"
    monkeypatch.setenv("RB_WRONG_KEY", "wrong-key-value")
    with pytest.raises(UsageError, match=r"refused the key from \$RB_WRONG_KEY") as err:
        adapter(server, api_key_env="RB_WRONG_KEY")
    assert "wrong-key-value" not in str(err.value)
    with pytest.raises(UsageError, match="never pass the key"):
        OpenAIAdapter.from_args(model="m", api_key="sk-should-not-appear")
    with pytest.raises(UsageError, match="needs --model-args model=NAME"):
        OpenAIAdapter.from_args(base_url=server.base_url)


def test_unreachable_endpoint_is_a_usage_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens on this port now
    with pytest.raises(UsageError, match="cannot reach"):
        OpenAIAdapter.from_args(base_url=f"http://127.0.0.1:{port}/v1", model="m", retries="1", backoff="0")


def test_fingerprint_is_model_name_plus_reported_revision(server: FakeOpenAI) -> None:
    first, second = adapter(server), adapter(server)
    assert first.fingerprint() == second.fingerprint()
    assert first.revision == "/weights/fake-vlm-r1"
    server.root = "/weights/fake-vlm-r2"
    assert adapter(server).fingerprint() != first.fingerprint()
    assert adapter(server, revision="r1").fingerprint() != first.fingerprint()
    described = json.dumps(first.describe())
    assert "fake-vlm" in described and "Bearer" not in described
