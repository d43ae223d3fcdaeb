"""The tiny-random presets of radfm, openflamingo and medflamingo in bf16 on CUDA, batch 1 vs 8.

What it shows on a GPU machine: the adapters' device and dtype handling works end to end in bf16
(no CPU-only op, no dtype mismatch between the vision tower, the connector and the LM), and how
much batching buys (throughput ratio bs=8 / bs=1, same requests, same machine). It also reports
whether bs=8 reproduced the bs=1 tokens: exact in fp32 on the CPU (the tests assert it), while
bf16 kernels may legitimately pick different tie-breaks, so here it is reported, not required.

Then it splits each preset layer by layer across devices, as ``--model-args device_map=auto`` /
``gpus_per_replica=K`` does with released weights, and reports whether the split model decoded the
unsplit model's tokens. With two or more GPUs the layers alternate between ``cuda:0`` and
``cuda:1`` (same kernels, so the tokens should be identical); with one GPU they alternate between
the CPU and ``cuda:0``, which still crosses a real device boundary at every layer (the tokens may
differ there: CPU and CUDA bf16 kernels round differently). The test suite checks the same split
on the CPU with a fake second device (``tests/test_model_parallel.py``); only this checks CUDA.

Without CUDA it falls back to fp32 on the CPU so the script stays runnable anywhere. Usage::

    python benchmarks/gpu_tiny_presets.py [--requests 32] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# Appended, not prepended: on a machine where radbench is installed with --target (a GPU box with
# no index), the installed package, which maps models/ to radbench.models, must win over the
# checkout's bare radbench/ folder.
sys.path.append(str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.common import machine, report  # noqa: E402

MODELS = ("radfm", "openflamingo", "medflamingo")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32, help="demo VQA requests per model (2D and 3D)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()

    import torch

    from radbench import registry
    from radbench.tasks.demo import DemoDataset
    from radbench.tasks.vqa import VQATask

    cuda = torch.cuda.is_available()
    device, dtype = ("cuda", "bf16") if cuda else ("cpu", "fp32")
    print(f"machine: {machine()}; running on {device} in {dtype}", file=sys.stderr)
    task = VQATask(gen_kwargs={"max_new_tokens": args.max_new_tokens})
    samples = DemoDataset().load("vqa", "test", None)
    requests = [task.render(samples[i % len(samples)]) for i in range(args.requests)]

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    for name in MODELS:
        adapter = registry.get("models", name).from_args(preset="tiny-random", dtype=dtype, device=device)
        adapter.generate(requests[:2])  # warm-up: kernels, allocator, lazy imports
        timings: dict[int, float] = {}
        outputs: dict[int, list[str]] = {}
        for batch in (1, 8):
            sync()
            start = time.perf_counter()
            out: list[str] = []
            for i in range(0, len(requests), batch):
                out += adapter.generate(requests[i : i + batch])
            sync()
            timings[batch] = time.perf_counter() - start
            outputs[batch] = out
        same = sum(a == b for a, b in zip(outputs[1], outputs[8]))
        speedup = timings[1] / timings[8]
        report(
            f"{name} tiny-random {dtype} on {device}: throughput bs=8 / bs=1", speedup, "> 1 (batching helps)",
            speedup > 1.0,
            f"{len(requests) / timings[1]:.1f} vs {len(requests) / timings[8]:.1f} samples/s; "
            f"bs=8 reproduced bs=1 on {same}/{len(requests)} requests",
            model=name, device=device, dtype=dtype, samples_per_s_bs1=round(len(requests) / timings[1], 2),
            samples_per_s_bs8=round(len(requests) / timings[8], 2), identical=same, n=len(requests),
            peak_gpu_mib=round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None,
        )
        del adapter
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    for name in (*MODELS, "llava-med", "medvint"):
        split_check(name, requests[:8], device, dtype)
    return 0


def split_check(name: str, requests: list, device: str, dtype: str) -> None:
    """The preset split layer by layer over two devices vs the same preset on one."""
    import torch

    from radbench import registry
    from radbench.models import placement

    cls = registry.get("models", name)
    requests = [r for r in requests if r.images] if "flamingo" in name else requests
    whole = cls.from_args(preset="tiny-random", dtype=dtype, device=device).generate(requests)
    split = cls.from_args(preset="tiny-random", dtype=dtype, device="cpu")
    if torch.cuda.device_count() >= 2:
        first, second = torch.device("cuda", 0), torch.device("cuda", 1)
    elif torch.cuda.is_available():
        first, second = torch.device("cpu"), torch.device("cuda", 0)
    else:
        first = second = torch.device("cpu")
    model, path, _ = split.split_points()
    sizes = [placement.tensor_bytes(layer) for layer in model.get_submodule(path)]
    parts = 8 * len(sizes)  # one layer per part; even layers on the second device
    devices = [first] * parts
    for index, part in enumerate(placement.split_layers(placement.tensor_bytes(model) - sum(sizes), sizes, parts)):
        if index % 2 == 0:
            devices[part] = second
    split.spread(devices, check_memory=False)
    start = time.perf_counter()
    out = split.generate(requests)
    seconds = time.perf_counter() - start
    same = sum(a == b for a, b in zip(out, whole))
    mixed = first.type != second.type  # CPU and CUDA kernels: identical tokens are not expected
    crossing = "every layer crosses a device boundary" if first != second else "hooks only (one device)"
    report(f"{name} tiny-random {dtype} split over {first} and {second}: requests decoded as unsplit",
           same / len(requests), "1.0 (reported only for CPU+GPU)", same == len(requests) or mixed,
           f"{same}/{len(requests)} identical; {crossing}; {seconds:.1f}s",
           model=name, devices=[str(first), str(second)], dtype=dtype, identical=same, n=len(requests))


if __name__ == "__main__":
    raise SystemExit(main())
