"""Test adapters, loaded with ``--model tests.support.adapters:NAME`` (the module:Class form)."""

from __future__ import annotations

import os
import time
from typing import Sequence

from radbench.errors import SampleError, UsageError
from radbench.models.base import Adapter
from radbench.types import Request, stable_hash


class EchoAdapter(Adapter):
    """Answers with the query's last word, after an optional delay per request (for kill tests)."""

    name = "echo"
    version = "1"
    max_batch_size = 4

    def __init__(self, delay: float = 0.0, fail_on: str = "", slow_rank: int | None = None) -> None:
        # slow_rank=N: that torchrun rank takes 5x the delay, as a rank on the wrong device would
        self.delay = delay * (5 if slow_rank is not None and int(os.environ.get("RANK", "0")) == slow_rank else 1)
        self.fail_on = fail_on

    @classmethod
    def from_args(cls, **model_args: str) -> Adapter:
        unknown = set(model_args) - {"delay", "fail_on", "api_key", "slow_rank"}  # api_key: accepted like an API model
        if unknown:
            raise UsageError(f"echo: unknown --model-args {sorted(unknown)}")
        slow = model_args.get("slow_rank")
        return cls(float(model_args.get("delay", 0)), model_args.get("fail_on", ""), int(slow) if slow else None)

    def generate(self, requests: Sequence[Request]) -> list[str]:
        out = []
        for req in requests:
            if self.fail_on and req.sample_id == self.fail_on and not os.environ.get("ECHO_HEALED"):
                raise SampleError(f"image for {req.sample_id}: unreadable (injected)")
            time.sleep(self.delay)
            words = req.query.text("").split()
            out.append(words[-1] if words else "")
        return out

    def fingerprint(self) -> str:
        return stable_hash(["echo", self.fail_on])


class TightMemoryAdapter(EchoAdapter):
    """An echo model on a GPU that holds ``fits`` requests at once; ``never=ID`` does not fit even alone.

    Raises torch's real ``OutOfMemoryError``, as a CUDA kernel would.
    """

    name = "tight-memory"

    def __init__(self, fits: int, never: str) -> None:
        super().__init__()
        self.fits = fits
        self.never = never
        self.calls: list[int] = []

    @classmethod
    def from_args(cls, **model_args: str) -> Adapter:
        if model_args.get("weights_fit") == "0":  # the weights alone exceed the GPU
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 26.00 GiB (injected)")
        return cls(int(model_args.get("fits", "1")), model_args.get("never", ""))

    def generate(self, requests: Sequence[Request]) -> list[str]:
        import torch

        self.calls.append(len(requests))
        if len(requests) > self.fits or any(r.sample_id == self.never for r in requests):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected)")
        return super().generate(requests)

    def fingerprint(self) -> str:
        return stable_hash(["echo", ""])  # the same answers as EchoAdapter: comparable predictions
