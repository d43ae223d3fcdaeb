"""One conformance suite for every registered model adapter, built-in or added through an entry point.

Each adapter is built the cheapest faithful way (checkpoint models with ``preset=tiny-random``, the
baselines after seeing exemplars, the callable on a test function, the API adapter against a real
HTTP server on 127.0.0.1) and must:

* give the same outputs at batch size 1 and N, and the same outputs twice;
* answer requests with 0, 1 and several images, a 3D study (2D models use their slice policy),
  answer options, and a few-shot exemplar;
* respect ``max_new_tokens`` (counted at the LM head for torch models);
* return ``""`` for an empty generation (not raise), so the runner records an empty prediction;
* keep its fingerprint across loads and change it for different weights;
* describe itself in JSON.

An adapter the suite does not know is built with ``conformance_args`` (a class attribute) or
``preset=tiny-random``, and ``conformance_alt_args`` (a list) or ``preset=tiny-random,seed=1`` for the
different-weights check; a torch adapter is silenced and counted through its LM head. An adapter
that cannot be built fails every test here unless ``EXEMPT`` lists it with a reason; known gaps are
strict xfails with their reason, so fixing one turns the suite red until the entry is removed.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest
from PIL import Image

from radbench import registry
from radbench.errors import SampleError, UsageError
from radbench.models.base import Adapter
from radbench.types import ImageRef, Request, Segment, Turn
from tests.support.fake_openai import FakeOpenAI

MAX_NEW = 4

# Registered adapters that cannot be built in this environment, each with the reason. Empty: every
# adapter radbench ships runs here without weights.
EXEMPT: dict[str, str] = {}

# (adapter, test) pairs known not to conform yet: strict xfails, so a fix shows up as a failure to clean up.
KNOWN_GAPS: dict[tuple[str, str], str] = {}


class TinyCallable:
    """The ``python`` adapter's target here: a deterministic function of the prompt and the images."""

    def __init__(self, weights: str) -> None:
        self.tag = Path(weights).read_text().strip()
        self.silent = False

    def __call__(self, inputs: list) -> list[str]:
        if self.silent:
            return ["" for _ in inputs]
        out = []
        for item in inputs:
            words = [self.tag, str(len(item.images)), *item.text.split()[::-1]]
            out.append(" ".join(words[: item.max_new_tokens or len(words)]))
        return out


@dataclass
class Spec:
    """How the suite builds, varies and silences one adapter."""

    args: dict[str, str]
    alt_args: list[dict[str, str]]  # each must give a different fingerprint (other weights, dtype, exemplars)
    exemplars: bool = False  # a baseline: it must see the exemplar split first
    counts_tokens: bool = True  # False: answers are not decoded (stored references), so no length bound
    silence: Callable[[Adapter], Any] | None = None  # a context manager factory; None: force EOS at the LM head


def exemplar_requests(answers: tuple[str, ...]) -> list[Request]:
    return [Request(f"ex{i}", (Turn((Segment(text=q),), answer=a, sample_id=f"ex{i}"),), subset="s")
            for i, (q, a) in enumerate(zip(("Is there an effusion?", "Which side?", "Is the heart enlarged?"), answers))]


@contextmanager
def _baseline_silence(adapter: Adapter) -> Iterator[None]:
    adapter.observe_exemplars(exemplar_requests(("", "", "")))
    yield


@contextmanager
def _callable_silence(adapter: Adapter) -> Iterator[None]:
    fn = adapter.fn  # type: ignore[attr-defined]
    fn.silent = True
    try:
        yield
    finally:
        fn.silent = False


def builtin_specs(server: FakeOpenAI, weights: tuple[Path, Path]) -> dict[str, Spec]:
    tiny = {"preset": "tiny-random", "device": "cpu"}
    alt = [{**tiny, "seed": "1"}, {**tiny, "dtype": "bf16"}]

    @contextmanager
    def empty_server(adapter: Adapter) -> Iterator[None]:
        server.empty = True
        try:
            yield
        finally:
            server.empty = False

    api = {"base_url": server.base_url, "model": server.model, "backoff": "0", "retries": "1", "timeout": "5"}
    return {
        "radfm": Spec(tiny, alt),
        "medflamingo": Spec(tiny, alt),
        "openflamingo": Spec(tiny, alt),
        "llava-med": Spec(tiny, alt),
        "medvint": Spec(tiny, alt),
        "majority": Spec({}, [{}], exemplars=True, counts_tokens=False, silence=_baseline_silence),
        "retrieval": Spec({}, [{}, {"image_weight": "0.9"}], exemplars=True, counts_tokens=False, silence=_baseline_silence),
        "python": Spec({"fn": "tests.test_conformance:TinyCallable", "weights": str(weights[0])},
                       [{"fn": "tests.test_conformance:TinyCallable", "weights": str(weights[1])}],
                       silence=_callable_silence),
        "openai": Spec(api, [{**api, "model": "another-model"}, {**api, "revision": "r2"}], silence=empty_server),
    }


def plugin_spec(cls: type) -> Spec:
    """Defaults for an adapter the suite has never seen (added through an entry point)."""
    args = dict(getattr(cls, "conformance_args", {"preset": "tiny-random"}))
    alt = list(getattr(cls, "conformance_alt_args", [{**args, "seed": "1"}]))
    return Spec(args, alt)


NAMES = registry.names("models")


# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as srv:
        yield srv


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("conformance")
    rng = np.random.default_rng(7)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (36, 36), dtype=np.uint8)).save(root / "b.png")
    np.save(root / "ct.npy", rng.normal(0, 300, (1, 32, 32, 8)).astype(np.float32))
    (root / "w0.txt").write_text("w0")
    (root / "w1.txt").write_text("w1")
    return root


@pytest.fixture(scope="module")
def specs(server: FakeOpenAI, files: Path) -> dict[str, Spec]:
    return builtin_specs(server, (files / "w0.txt", files / "w1.txt"))


def spec_of(name: str, specs: dict[str, Spec]) -> Spec:
    return specs.get(name) or plugin_spec(registry.get("models", name))


def build(name: str, spec: Spec, args: dict[str, str] | None = None) -> Adapter:
    cls = registry.get("models", name)
    try:
        adapter = cls.from_args(**(spec.args if args is None else args))
    except UsageError as exc:
        pytest.fail(f"adapter {name!r} cannot be built for the conformance suite: {exc} "
                    "(give it conformance_args, or list it in EXEMPT with a reason)")
    if spec.exemplars:
        adapter.observe_exemplars(exemplar_requests(("yes", "left", "no")))
    return adapter


_BUILT: dict[str, Adapter] = {}


@pytest.fixture()
def adapter(request: pytest.FixtureRequest, specs: dict[str, Spec]) -> Adapter:
    name = request.node.callspec.params["name"]
    gap = KNOWN_GAPS.get((name, request.node.originalname))
    if gap:
        request.node.add_marker(pytest.mark.xfail(reason=gap, strict=True))
    if name not in _BUILT:
        _BUILT[name] = build(name, spec_of(name, specs))
    return _BUILT[name]


@pytest.fixture(scope="module")
def requests_(files: Path) -> list[Request]:
    a, b = ImageRef("a.png", root=str(files)), ImageRef("b.png", root=str(files))
    ct = ImageRef("ct.npy", kind="3d", root=str(files))
    gen = {"max_new_tokens": MAX_NEW}

    def req(sid: str, *segments: Segment, exemplars: tuple[Turn, ...] = (), options: tuple[str, ...] = ()) -> Request:
        return Request(sid, exemplars + (Turn(segments, sample_id=sid),), gen_kwargs=gen, task="vqa", dataset="conf",
                       subset="s", options=options)

    return [
        req("one-image", Segment(image=a), Segment(text="Which side is the effusion on?")),
        req("two-images", Segment(image=a), Segment(image=b), Segment(text="Which image shows more fluid?")),
        req("3d-study", Segment(image=ct), Segment(text="How many nodules are there?")),
        req("options", Segment(image=b), Segment(text="Is the heart enlarged?"), options=("yes", "no")),
        req("few-shot", Segment(image=a), Segment(text="Which side?"),
            exemplars=(Turn((Segment(image=b), Segment(text="Is there an effusion?")), answer="yes", sample_id="e1"),)),
    ]


def reworded(request: Request, suffix: str) -> Request:
    query = request.query
    segments = query.segments[:-1] + (Segment(text=(query.segments[-1].text or "") + suffix),)
    return replace(request, turns=request.exemplars + (replace(query, segments=segments),))


def in_batches(adapter: Adapter, requests: list[Request]) -> list[str]:
    size = max(1, min(adapter.max_batch_size, len(requests)))
    out: list[str] = []
    for start in range(0, len(requests), size):
        out += adapter.generate(requests[start : start + size])
    return out


def lm_head(adapter: Adapter) -> Any:
    """The output-embedding layer of the first transformers model the adapter holds (``None``: not torch)."""
    try:
        import torch
    except ImportError:
        return None
    for value in vars(adapter).values():
        if isinstance(value, torch.nn.Module):
            for module in value.modules():
                getter = getattr(module, "get_output_embeddings", None)
                head = getter() if callable(getter) else None
                if head is not None:
                    return head
    return None


# -- the suite ---------------------------------------------------------------------------------------

pytestmark = pytest.mark.parametrize("name", [n for n in NAMES if n not in EXEMPT])


def test_every_registered_adapter_is_in_the_suite(name: str) -> None:
    assert name in registry.names("models")
    assert set(EXEMPT) <= set(NAMES), "EXEMPT names an adapter that is no longer registered"


def test_batch_size_one_and_n_agree(name: str, adapter: Adapter, requests_: list[Request]) -> None:
    alone = [adapter.generate([r])[0] for r in requests_]
    together = in_batches(adapter, requests_)
    assert all(isinstance(o, str) for o in alone)
    assert together == alone


def test_deterministic(name: str, adapter: Adapter, requests_: list[Request]) -> None:
    assert in_batches(adapter, requests_) == in_batches(adapter, requests_)


def test_zero_one_several_images_and_a_3d_study(name: str, adapter: Adapter, requests_: list[Request]) -> None:
    by_id = {r.sample_id: r for r in requests_}
    for sid in ("one-image", "two-images", "3d-study"):
        out = adapter.generate([by_id[sid]])
        assert len(out) == 1 and isinstance(out[0], str), sid
    # Without an image a model may answer, or refuse that sample in one line (recorded as its failure).
    text_only = replace(by_id["one-image"], sample_id="no-image",
                        turns=(Turn((Segment(text="Is there an effusion?"),), sample_id="no-image"),))
    try:
        out = adapter.generate([text_only])
    except SampleError as exc:
        assert str(exc) and "\n" not in str(exc)
    else:
        assert len(out) == 1 and isinstance(out[0], str)


def test_max_new_tokens_is_respected(name: str, adapter: Adapter, specs: dict[str, Spec],
                                     requests_: list[Request]) -> None:
    spec = spec_of(name, specs)
    if not spec.counts_tokens:
        # Baselines return stored reference answers: nothing is decoded, so a budget must not change them.
        outs = [adapter.generate([replace(r, gen_kwargs={"max_new_tokens": k}) for r in requests_]) for k in (1, 3)]
        assert outs[0] == outs[1] and all(isinstance(t, str) for t in outs[0])
        return
    head = lm_head(adapter)
    calls = []
    handle = head.register_forward_hook(lambda *_: calls.append(1)) if head is not None else None
    try:
        for request in requests_:
            if request.options:
                continue  # answered by scoring the options, not by decoding
            for limit in (1, 3):
                calls.clear()
                text = adapter.generate([replace(request, gen_kwargs={"max_new_tokens": limit})])[0]
                assert len(text.split()) <= limit, (request.sample_id, text)
                if head is not None:
                    assert len(calls) <= limit, (request.sample_id, len(calls))
    finally:
        if handle is not None:
            handle.remove()


@contextmanager
def _force_eos(adapter: Adapter) -> Iterator[None]:
    head = lm_head(adapter)
    tokenizer = getattr(adapter, "tokenizer", None)
    if head is None or tokenizer is None or tokenizer.eos_token_id is None:
        pytest.fail(f"cannot make {adapter.name!r} generate nothing: give its Spec a silence hook")

    def hook(module: Any, inputs: Any, output: Any) -> Any:
        forced = output.clone()
        forced[...] = -1e4
        forced[..., tokenizer.eos_token_id] = 1e4
        return forced

    handle = head.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def test_empty_generation_is_an_empty_string(name: str, adapter: Adapter, specs: dict[str, Spec],
                                             requests_: list[Request]) -> None:
    spec = spec_of(name, specs)
    # Fresh prompts, so an adapter that remembers answers (the API adapter) has to ask again.
    open_requests = [reworded(r, " Answer briefly.") for r in requests_ if not r.options]
    with (spec.silence or _force_eos)(adapter):
        assert adapter.generate(open_requests) == [""] * len(open_requests)
    if spec.exemplars:  # restore what the other tests expect
        adapter.observe_exemplars(exemplar_requests(("yes", "left", "no")))


def test_fingerprint_stable_across_loads(name: str, adapter: Adapter, specs: dict[str, Spec]) -> None:
    assert build(name, spec_of(name, specs)).fingerprint() == adapter.fingerprint()


def test_fingerprint_differs_for_other_weights_or_settings(name: str, adapter: Adapter, specs: dict[str, Spec]) -> None:
    spec = spec_of(name, specs)
    for args in spec.alt_args:
        other = build(name, spec, args)
        if spec.exemplars and args == spec.args:  # a baseline's "weights" are its exemplars
            other.observe_exemplars(exemplar_requests(("no", "right", "yes")))
        assert other.fingerprint() != adapter.fingerprint(), args


def test_describe_is_json(name: str, adapter: Adapter) -> None:
    described = json.loads(json.dumps(adapter.describe()))
    assert described["name"] == adapter.name and described["fingerprint"] == adapter.fingerprint()
    assert described["version"]
