"""A second device on a CPU-only machine, for checking that a split model never mixes devices.

No GPU is lent to the test suite, and with every part of a split model on the CPU a device bug
(a tensor left on the first GPU while its layer runs on the second) goes unseen. Here the layers
that :meth:`CheckpointAdapter.spread` put on ``meta`` are swapped for FakeTensors: they compute
shapes only, report any op that mixes ``cpu`` and ``meta`` tensors as
``FakeTensorDeviceMismatchError``, and, unlike plain meta tensors, can be copied back to the CPU
for the final norm and the LM head. Decoding needs real values, so :func:`first_step_only` stops
the adapter after the prompt's forward pass and reports where the logits came out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from radbench.models import placement
from radbench.models.checkpoint import CheckpointAdapter

CPU = torch.device("cpu")
META = torch.device("meta")


class PromptStep(Exception):
    """Raised after the first decoding step, carrying its logits."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__(f"logits {tuple(logits.shape)} on {logits.device}")
        self.logits = logits


def first_step_only(step: Any, *, attention_mask: torch.Tensor, input_ids: torch.Tensor | None = None,
                    inputs_embeds: torch.Tensor | None = None, **_: Any) -> list[list[int]]:
    """Stands in for :func:`decoding.greedy_generate`: the prompt's forward pass, then :class:`PromptStep`."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits, _ = step(input_ids, inputs_embeds, attention_mask, position_ids, None)
    raise PromptStep(logits)


def fake_meta_layers(adapter: CheckpointAdapter) -> list[int]:
    """Turn the decoder layers :meth:`~CheckpointAdapter.spread` put on ``meta`` into FakeTensors.

    Returns their indices.
    """
    model, path, _ = adapter.split_points()
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    moved = []
    for index, layer in enumerate(model.get_submodule(path)):
        if next(layer.parameters()).device != META:
            continue
        moved.append(index)
        for module in layer.modules():
            for name, param in list(module._parameters.items()):
                if param is not None:
                    module._parameters[name] = torch.nn.Parameter(mode.from_tensor(param), requires_grad=False)
            for name, buffer in list(module._buffers.items()):
                if buffer is not None:
                    module._buffers[name] = mode.from_tensor(buffer)
    return moved


def alternating(adapter: CheckpointAdapter, second: torch.device) -> list[torch.device]:
    """Enough parts that each layer gets its own; even layers on ``second``, odd ones on the CPU.

    Tiny models are mostly embeddings, so two parts would put every layer on the second device;
    alternating makes the hidden states cross a device boundary at every layer.
    """
    model, path, _ = adapter.split_points()
    sizes = [placement.tensor_bytes(layer) for layer in model.get_submodule(path)]
    parts = 8 * len(sizes)
    assignment = placement.split_layers(placement.tensor_bytes(model) - sum(sizes), sizes, parts)
    assert len(set(assignment)) == len(sizes)
    devices = [CPU] * parts
    for index, part in enumerate(assignment):
        if index % 2 == 0:
            devices[part] = second
    return devices
