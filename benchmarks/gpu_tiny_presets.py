"""The tiny-random presets of radfm, openflamingo and medflamingo in bf16 on CUDA, batch 1 vs 8.

What it shows on a GPU machine: the adapters' device and dtype handling works end to end in bf16
(no CPU-only op, no dtype mismatch between the vision tower, the connector and the LM), and how
much batching buys (throughput ratio bs=8 / bs=1, same requests, same machine). It also reports
whether bs=8 reproduced the bs=1 tokens: exact in fp32 on the CPU (the tests assert it), while
bf16 kernels may legitimately pick different tie-breaks, so here it is reported, not required.

Without CUDA it falls back to fp32 on the CPU so the script stays runnable anywhere. Usage::

    python benchmarks/gpu_tiny_presets.py [--requests 32] [--max-new-tokens 16]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
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
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
