"""Where a model runs: its build device, and one replica split over several GPUs by decoder layers.

``--model-args device_map=auto`` / ``gpus=0,1`` (the runner writes ``gpus=`` from
``gpus_per_replica=K``) split one replica; :func:`plan_spread` decides where each decoder layer
goes, :func:`dispatch` moves the model and hooks the parts together.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch

from radbench.errors import UsageError


def parse_device(model: str, text: str | None) -> torch.device:
    """``device=`` or the default: the first CUDA device when there is one, else the CPU."""
    if not text:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise UsageError(f"model {model!r}: device={text!r} is not a torch device ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"model {model!r}: device={text!r} but this torch build sees no CUDA device")
    return device



def parse_placement(model: str, model_args: Mapping[str, str]) -> list[torch.device] | None:
    """The GPUs one replica is split over, or ``None`` for a single-device model.

    ``device_map=auto`` alone takes every visible GPU; ``gpus=0,1`` (which the runner writes from
    ``gpus_per_replica=K``, one disjoint block per rank) names them. ``device=`` cannot be combined:
    a split replica's inputs always start on its first GPU.
    """
    device_map, gpus = model_args.get("device_map"), model_args.get("gpus")
    if not device_map and not gpus:
        return None
    if device_map and device_map != "auto":
        raise UsageError(f"model {model!r}: device_map={device_map!r} is not supported "
                         "(use device_map=auto, optionally with gpus=0,1,...)")
    if model_args.get("device"):
        raise UsageError(f"model {model!r}: device= and device_map=/gpus= exclude each other "
                         "(a split model starts on the first of its gpus)")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UsageError(f"model {model!r}: device_map=auto splits the model across CUDA GPUs, "
                         "but this torch build sees none")
    if not gpus:
        return [torch.device("cuda", i) for i in range(count)]
    try:
        indices = [int(g) for g in gpus.replace(";", ",").split(",") if g.strip()]
    except ValueError:
        raise UsageError(f"model {model!r}: gpus={gpus!r} is not a list of GPU indices (e.g. gpus=0,1)") from None
    bad = [i for i in indices if not 0 <= i < count]
    if not indices or bad or len(set(indices)) != len(indices):
        raise UsageError(f"model {model!r}: gpus={gpus!r} must name distinct GPUs among 0..{count - 1}")
    return [torch.device("cuda", i) for i in indices]


def parse_devices(model: str, model_args: Mapping[str, str]) -> tuple[torch.device, list[torch.device] | None]:
    """``(device to build on, GPUs to split over)``: a split model is built on the CPU, then spread."""
    devices = parse_placement(model, model_args)
    return (torch.device("cpu") if devices else parse_device(model, model_args.get("device"))), devices


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers, a tied tensor counted once."""
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        key = tensor.data_ptr() if tensor.device.type != "meta" else id(tensor)
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def split_layers(fixed: int, layers: Sequence[int], parts: int) -> list[int]:
    """Which of ``parts`` devices each decoder layer goes to: contiguous runs, balanced in bytes.

    Device 0 also holds ``fixed`` bytes (vision tower, embeddings, final norm, LM head), so it
    takes fewer layers. A layer goes to the device whose equal share of the total its midpoint
    falls in; the result never decreases, so activations cross each GPU boundary once per step.
    """
    if parts < 1:
        raise ValueError("parts must be >= 1")
    share = (fixed + sum(layers)) / parts
    out, before = [], fixed
    for size in layers:
        out.append(min(parts - 1, int((before + size / 2) // share)) if share else 0)
        before += size
    return out


def free_gpu_bytes(device: torch.device) -> int:
    """Free memory on a CUDA device now (other processes' allocations included)."""
    return int(torch.cuda.mem_get_info(device)[0])


# A split must leave this share of each GPU's free memory for activations and the KV cache.
HEADROOM = 0.15


@dataclass
class SpreadPlan:
    """Where each part of a model goes when it is split over several devices (see :func:`plan_spread`)."""

    layers_path: str
    devices: list[torch.device]
    device_map: dict[str, torch.device]
    loose: list[str]  # tensors owned directly by a module on the path to the layers
    description: dict[str, Any]

    def device_of(self, key: str) -> torch.device:
        """The device of a parameter or buffer name: its longest prefix in the device map."""
        parts = key.split(".")
        for cut in range(len(parts), 0, -1):
            device = self.device_map.get(".".join(parts[:cut]))
            if device is not None:
                return device
        return self.devices[0]


def plan_spread(
    model: torch.nn.Module,
    layers_path: str,
    devices: Sequence[torch.device],
    *,
    name: str,
    free_bytes: Callable[[torch.device], int] | None = free_gpu_bytes,
) -> SpreadPlan:
    """Decide how ``model`` is split over ``devices`` by its decoder layers; moves nothing.

    Why not ``infer_auto_device_map``: every module outside the LM's layer stack (vision tower,
    resampler, embeddings, final norm, LM head) stays on ``devices[0]``, the adapter's input
    device. Adapter code that combines those modules' outputs (RadFM's visual rows into the token
    table, Flamingo's media, LLaVA's image features) then never sees two devices, logits come back
    where decoding runs, and only whole decoder layers (never split, so residual streams stay on
    one device) move. Works on a model whose weights are still on ``meta`` (sizes only), so the
    capacity check comes before a long load. ``free_bytes=None`` skips that check.
    """
    layer_list = model.get_submodule(layers_path)
    sizes = [tensor_bytes(layer) for layer in layer_list]
    fixed = tensor_bytes(model) - sum(sizes)
    assignment = split_layers(fixed, sizes, len(devices))
    load = [fixed if i == 0 else 0 for i in range(len(devices))]
    for size, part in zip(sizes, assignment):
        load[part] += size
    if free_bytes is not None:
        for device, need in zip(devices, load):
            have = free_bytes(device)
            if need > have * (1 - HEADROOM):
                raise UsageError(
                    f"model {name!r}: its share on {device} is {need / 2**30:.1f} GiB but only {have / 2**30:.1f} GiB "
                    f"is free (a {int(HEADROOM * 100)}% margin is kept for activations); use more GPUs "
                    "(gpus_per_replica=K) or a smaller dtype"
                )
    device_map: dict[str, torch.device] = {}
    loose: list[str] = []
    prefix = ""
    parent = model
    for step in layers_path.split("."):
        for child_name, _ in parent.named_children():
            if child_name != step:
                device_map[prefix + child_name] = devices[0]
        for tensor_name, _ in [*parent.named_parameters(recurse=False), *parent.named_buffers(recurse=False)]:
            loose.append(prefix + tensor_name)
            device_map[prefix + tensor_name] = devices[0]  # the coverage check needs them; moved by dispatch
        parent = getattr(parent, step)
        prefix += step + "."
    for index, part in enumerate(assignment):
        device_map[f"{layers_path}.{index}"] = devices[part]
    parts = []
    for part, device in enumerate(devices):
        owned = [i for i, a in enumerate(assignment) if a == part]
        span = "none" if not owned else str(owned[0]) if len(owned) == 1 else f"{owned[0]}-{owned[-1]}"
        parts.append({"device": str(device), "layers": span, "weights_mib": round(load[part] / 2**20, 1)})
    return SpreadPlan(layers_path, list(devices), device_map, loose, {"split_by": layers_path, "parts": parts})


def dispatch(model: torch.nn.Module, plan: SpreadPlan, skip_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Move ``model`` as ``plan`` says and hook every split part; returns the placement to record.

    The hooks that carry hidden states between GPUs are accelerate's, as in transformers' own
    ``device_map`` loading. Tensors already on their device (streamed there by
    :func:`load_checked`) stay where they are.
    """
    from accelerate import dispatch_model
    from accelerate.utils import set_module_tensor_to_device

    with warnings.catch_warnings():  # accelerate hooks modules only, so it warns about the loose tensors
        warnings.filterwarnings("ignore", message="The following device_map keys do not match any submodules")
        dispatch_model(model, device_map=plan.device_map, main_device=plan.devices[0],
                       skip_keys=list(skip_keys) or None, force_hooks=True)
    for tensor_name in plan.loose:
        set_module_tensor_to_device(model, tensor_name, plan.devices[0])
    return plan.description
