"""Where a model runs and what happens when it does not fit: the orchestration's GPU side.

A rank gets its GPUs here (one each, or a disjoint block of K for a model split by layers), and an
accelerator out-of-memory error is recognised without importing torch, so that loading stops in one
line that says what to try and generation can halve its batch size instead of losing the run
(radbench/runner.py's ``generate``).
"""

from __future__ import annotations

import sys

from radbench import distributed
from radbench.errors import UsageError
from radbench.models.base import Adapter


def load_adapter(model: str, adapter_cls: type[Adapter], model_args: dict[str, str]) -> Adapter:
    """Build the adapter; a model too large for its GPU is a one-line error that says what to try."""
    adapter: Adapter | None = None
    try:
        adapter = adapter_cls.from_args(**model_args)
    except Exception as exc:
        if not out_of_memory(exc):
            raise
    if adapter is None:  # out of memory, outside the except block so the partial model can be freed
        release_memory()
        where = f"GPUs {model_args['gpus']}" if model_args.get("gpus") else model_args.get("device") or "its GPU"
        raise UsageError(f"model {model!r} ran out of memory while loading onto {where}: use dtype=bf16 or fp16, "
                         "or split it over several GPUs (--model-args gpus_per_replica=K, or device_map=auto)")
    return adapter


def place_replica(model: str, adapter_cls: type[Adapter], model_args: dict[str, str],
                   world: distributed.World) -> None:
    """Give this rank its GPUs: one per rank, or a disjoint block of K for a model split across GPUs.

    ``gpus_per_replica=K`` asks for K; ``device_map=auto`` under torchrun shares the node's GPUs
    evenly between its ranks (one process alone takes them all). The adapter receives ``gpus=``.
    """
    split = "gpus_per_replica" in model_args or "device_map" in model_args or "gpus" in model_args
    if split and not adapter_cls.supports_device_map:
        raise UsageError(f"model {model!r} cannot be split across GPUs (gpus_per_replica/device_map); "
                         "run one replica per GPU instead")
    if "gpus_per_replica" in model_args:
        try:
            per_replica = int(model_args.pop("gpus_per_replica"))
        except ValueError:
            raise UsageError("--model-args gpus_per_replica must be a whole number") from None
        if per_replica < 1:
            raise UsageError(f"--model-args gpus_per_replica must be >= 1, got {per_replica}")
    elif split and world.distributed and "gpus" not in model_args:
        per_replica = max(1, distributed.gpu_count() // distributed.ranks_per_node(world))
    else:
        if not split and world.distributed and "device" not in model_args and cuda_available():
            model_args["device"] = f"cuda:{world.local_rank}"
        return
    gpus = distributed.check_gpus(world, per_replica)
    model_args.setdefault("device_map", "auto")
    model_args.setdefault("gpus", ",".join(map(str, gpus)))


def cuda_available() -> bool:
    """Only asked in distributed runs, so single-process CPU runs never import torch here."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def out_of_memory(exc: BaseException) -> bool:
    """An accelerator out-of-memory error (``torch.OutOfMemoryError``), recognised without importing torch."""
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch is not None else None
    return oom is not None and isinstance(exc, oom)


def release_memory() -> None:
    """After an out-of-memory error: collect what the failed call left and return cached blocks to the GPU."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
