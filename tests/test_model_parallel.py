"""One replica split across devices (``device_map=auto`` / ``gpus_per_replica=K``), checked on the CPU.

No GPU is lent to the suite, so two things are checked separately:

* the arithmetic: every family, split layer by layer with accelerate's hooks on every layer,
  decodes exactly the tokens of the unsplit model (all parts on the CPU);
* the devices: the layers put on a second device are FakeTensors on ``meta`` (see
  ``tests/support/devices.py``), so any op that mixes the first device's tensors with a split
  layer's fails, and the prompt's logits must come back to the first device.

What cannot be checked here is CUDA itself (streams, NCCL-free peer copies, memory); that is
``benchmarks/gpu_tiny_presets.py``'s split section, for a session with a GPU.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")

from radbench import distributed, placement, registry, runner  # noqa: E402
from radbench.errors import UsageError  # noqa: E402
from radbench.models import decoding  # noqa: E402
from radbench.models import placement as pl  # noqa: E402
from radbench.models.checkpoint import CheckpointAdapter  # noqa: E402
from radbench.tasks.demo import DemoDataset  # noqa: E402
from radbench.tasks.vqa import VQATask  # noqa: E402
from radbench.types import Request  # noqa: E402
from tests.support.devices import CPU, META, PromptStep, alternating, fake_meta_layers, first_step_only  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FAMILIES = {
    "radfm": {},
    "openflamingo": {},
    "medflamingo": {},
    "llava-med": {},
    "medvint": {"mode": "open"},
    "medvint-options": {"mode": "auto"},
}


def build(family: str) -> CheckpointAdapter:
    name = family.removesuffix("-options")
    return registry.get("models", name).from_args(preset="tiny-random", **FAMILIES[family])


@pytest.fixture(scope="module")
def requests_() -> list[Request]:
    """2D, 3D and two-image demo questions; the options variant feeds MedVInT's letter scoring."""
    samples = DemoDataset().load("vqa", "test", None)
    task = VQATask(gen_kwargs={"max_new_tokens": 5})
    picked = samples[:2] + [s for s in samples if len(s.images) == 2][:1]
    picked += [s for s in samples if s.images and s.images[0].kind == "3d"][:1]
    return [task.render(s) for s in picked]


def family_requests(family: str, requests_: list[Request]) -> list[Request]:
    if family == "medvint-options":
        return [replace(r, options=("yes", "no", "left", "right")) for r in requests_]
    if family in ("openflamingo", "medflamingo"):  # the gated layers need an image in every prompt
        return [r for r in requests_ if r.images]
    return requests_


def test_split_layers_is_contiguous_balanced_and_spares_the_first_gpu() -> None:
    # RadFM-like: 40 layers of 0.6 GB, 3 GB outside them (vision tower, embeddings, LM head)
    layers = [6] * 40
    for parts in (2, 3, 4):
        got = pl.split_layers(30, layers, parts)
        assert got == sorted(got) and set(got) == set(range(parts))
        load = [30 * (p == 0) + 6 * got.count(p) for p in range(parts)]
        assert max(load) - min(load) <= 6  # within one layer of an even share
        assert got.count(0) < got.count(parts - 1)  # the first GPU also holds the fixed part
    assert pl.split_layers(30, layers, 1) == [0] * 40
    assert pl.split_layers(1000, [1, 1, 1], 2) == [1, 1, 1]  # fixed part above a share: no layer on 0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_split_replica_decodes_the_same_tokens(family: str, requests_: list[Request]) -> None:
    requests = family_requests(family, requests_)
    whole = build(family).generate(requests)
    split = build(family)
    devices = alternating(split, CPU)
    split.spread(devices, check_memory=False)
    model, path, _ = split.split_points()
    assert all(hasattr(layer, "_hf_hook") for layer in model.get_submodule(path))
    assert split.generate(requests) == whole
    placement = split.describe()["placement"]
    assert placement["split_by"] == path and len(placement["parts"]) == len(devices)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "medvint-options"])
def test_split_replica_never_mixes_devices(family: str, requests_: list[Request],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = build(family)
    model, path, _ = adapter.split_points()
    adapter.spread(alternating(adapter, META), check_memory=False)
    assert fake_meta_layers(adapter) == list(range(0, len(model.get_submodule(path)), 2))
    layers = model.get_submodule(path)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        inside = name.startswith(path + ".")
        want = META if inside and int(name[len(path) + 1:].split(".")[0]) % 2 == 0 else CPU
        assert tensor.device == want, name
    assert len(layers) >= 2
    monkeypatch.setattr(decoding, "greedy_generate", first_step_only)
    requests = family_requests(family, requests_)
    with pytest.raises(PromptStep) as step:
        adapter.generate(requests)
    logits = step.value.logits
    assert logits.device == CPU and logits.shape[0] == len(requests)


def test_the_fake_device_catches_a_layer_left_without_its_hook(requests_: list[Request],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.hooks import remove_hook_from_submodules
    from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError

    adapter = build("radfm")
    adapter.spread(alternating(adapter, META), check_memory=False)
    fake_meta_layers(adapter)
    model, path, _ = adapter.split_points()
    remove_hook_from_submodules(model.get_submodule(path)[0])
    monkeypatch.setattr(decoding, "greedy_generate", first_step_only)
    with pytest.raises(FakeTensorDeviceMismatchError):
        adapter.generate(requests_)


def test_tensors_owned_along_the_path_to_the_layers_stay_on_the_first_device() -> None:
    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(4))  # owned by a module the layer path passes through
            self.register_buffer("offset", torch.zeros(4))
            self.layers = torch.nn.ModuleList(torch.nn.Linear(4, 4) for _ in range(4))
            self.head = torch.nn.Linear(4, 2)

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stack = Stack()

    model = Outer()
    placement = pl.dispatch(model, pl.plan_spread(model, "stack.layers", [CPU, META], name="toy", free_bytes=None))
    assert [p["layers"] for p in placement["parts"]] == ["0-1", "2-3"]
    assert model.stack.scale.device == CPU and model.stack.offset.device == CPU and model.stack.head.weight.device == CPU
    assert [layer.weight.device for layer in model.stack.layers] == [CPU, CPU, META, META]


def test_a_replica_that_does_not_fit_is_refused_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    adapter = build("radfm")
    monkeypatch.setattr(pl, "free_gpu_bytes", lambda device: 1024)
    with pytest.raises(UsageError, match=r"its share on cpu is .* GiB but only 0\.0 GiB is free") as err:
        adapter.spread([CPU, CPU])
    assert "\n" not in str(err.value)
    assert adapter.placement is None


@pytest.fixture
def four_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """What parse_placement and the runner see on a node with four GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)


def test_placement_arguments(four_gpus: None) -> None:
    cuda = [torch.device("cuda", i) for i in range(4)]
    assert pl.parse_placement("radfm", {}) is None
    assert pl.parse_placement("radfm", {"device_map": "auto"}) == cuda
    assert pl.parse_placement("radfm", {"device_map": "auto", "gpus": "2,3"}) == cuda[2:]
    assert pl.parse_placement("radfm", {"gpus": "1"}) == cuda[1:2]
    for args, message in (
        ({"device_map": "balanced"}, "device_map='balanced' is not supported"),
        ({"device_map": "auto", "device": "cuda:0"}, "exclude each other"),
        ({"gpus": "0,0"}, "distinct GPUs among 0..3"),
        ({"gpus": "4"}, "distinct GPUs among 0..3"),
        ({"gpus": "first"}, "not a list of GPU indices"),
    ):
        with pytest.raises(UsageError, match=message):
            pl.parse_placement("radfm", args)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def test_placement_needs_cuda(no_gpu: None) -> None:
    with pytest.raises(UsageError, match="this torch build sees none"):
        registry.get("models", "radfm").from_args(preset="tiny-random", device_map="auto")


def test_each_rank_gets_its_own_block_of_gpus(four_gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    radfm = runner.adapter_class("radfm")
    second = distributed.World(rank=1, size=2, local_rank=1)
    args = {"gpus_per_replica": "2", "preset": "tiny-random"}
    placement.place_replica("radfm", radfm, args, second)
    assert args == {"preset": "tiny-random", "device_map": "auto", "gpus": "2,3"}
    args = {"device_map": "auto"}
    placement.place_replica("radfm", radfm, args, second)  # the node's GPUs shared evenly between its ranks
    assert args == {"device_map": "auto", "gpus": "2,3"}
    args = {"device_map": "auto"}
    placement.place_replica("radfm", radfm, args, distributed.World())  # alone: the adapter takes them all
    assert args == {"device_map": "auto"}
    with pytest.raises(UsageError, match="2 ranks x gpus_per_replica=3 needs 6 GPUs per node, but this node has 4"):
        placement.place_replica("radfm", radfm, {"gpus_per_replica": "3"}, second)
    with pytest.raises(UsageError, match="gpus_per_replica must be >= 1"):
        placement.place_replica("radfm", radfm, {"gpus_per_replica": "0"}, second)
    args = {}
    placement.place_replica("radfm", radfm, args, second)  # not split: one GPU per rank, as before
    assert args == {"device": "cuda:1"}


def test_run_with_gpus_per_replica_on_a_machine_without_gpus(no_gpu: None, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture) -> None:
    from radbench.cli import main

    code = main(["run", "--model", "radfm", "--task", "vqa", "--dataset", "demo", "--output", str(tmp_path),
                 "--model-args", "preset=tiny-random,gpus_per_replica=2"])
    err = capsys.readouterr().err
    assert code == 2 and "needs 2 GPUs per node, but this node has 0" in err and "Traceback" not in err


def test_a_run_with_gpus_per_replica_matches_the_unsplit_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the CLI: the runner hands this rank GPUs 0 and 1, the adapter splits over them (two CPU
    "GPUs" here), and the predictions and scores equal a one-device run's; the placement is recorded."""
    import json

    from radbench.cli import main
    from radbench.store import PREDICTIONS, RESULTS

    def run(out: Path, model_args: str) -> dict:
        code = main(["run", "--model", "radfm", "--task", "vqa", "--dataset", "demo", "--limit", "6", "--quiet",
                     "--output", str(out), "--model-args", model_args, "--metrics", "bleu4,rougeL"])
        assert code == 0
        return json.loads((out / RESULTS).read_text())

    whole = run(tmp_path / "whole", "preset=tiny-random")
    given: list[str] = []

    def placement(model: str, model_args: dict) -> list[torch.device] | None:
        given.append(model_args.get("gpus", ""))
        return [CPU, CPU] if model_args.get("device_map") == "auto" else None

    monkeypatch.setattr(distributed, "gpu_count", lambda: 2)
    monkeypatch.setattr(pl, "parse_placement", placement)
    monkeypatch.setattr(pl, "free_gpu_bytes", lambda device: 1 << 40)
    split = run(tmp_path / "split", "preset=tiny-random,gpus_per_replica=2")
    assert given == ["0,1"]
    assert split["model"]["placement"]["split_by"] == "lang_model.model.layers"
    assert split["model"]["fingerprint"] == whole["model"]["fingerprint"]
    assert split["metrics"] == whole["metrics"]
    assert (tmp_path / "split" / PREDICTIONS).read_bytes() == (tmp_path / "whole" / PREDICTIONS).read_bytes()
    import jsonschema

    from radbench import results

    results.validate(split)  # results.json is validated when written; the placement has a schema
    with pytest.raises(jsonschema.ValidationError):
        results.validate({**split, "model": {**split["model"], "placement": {"split_by": "x", "parts": []}}})
