"""(3) A tiny HF adapter at batch 8 vs batch 1: the speed-up from left-padded batched generation.

The tiny-random LLaVA-Med preset (transformers' LlavaForConditionalGeneration at toy sizes) generates
for 32 demo VQA requests, once in chunks of 1 and once in chunks of 8, with the same greedy
outputs required. Target: >= 3x. Tiny models are dominated by per-call overhead, which is exactly
what batching amortises; real models on a GPU gain for other reasons (memory bandwidth).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import report  # noqa: E402


def main() -> None:
    import torch

    from radbench import distributed, runner

    torch.set_num_threads(1)
    config = runner.RunConfig(model="llava-med", task="vqa", dataset="demo", output=Path("/nonexistent"),
                              model_args="preset=tiny-random,batch_size=8", gen_kwargs={"max_new_tokens": 16},
                              limit=32, quiet=True)
    plan = runner.plan(config, distributed.current_world())
    requests = [r for r in plan.requests if len(r.images) == 1][:32]
    adapter = plan.adapter
    adapter.generate(requests[:2])  # warm-up
    best = {1: float("inf"), 8: float("inf")}
    outputs = {}
    for _ in range(3):
        for size in (1, 8):
            t0 = time.perf_counter()
            outputs[size] = [o for s in range(0, len(requests), size) for o in adapter.generate(requests[s : s + size])]
            best[size] = min(best[size], time.perf_counter() - t0)
    same = outputs[1] == outputs[8]
    ratio = best[1] / best[8]
    report("(3) tiny HF adapter batch 8 vs batch 1 (speed-up)", ratio, ">= 3", ratio >= 3 and same,
           f"{len(requests)} requests, llava-med tiny-random, 16 new tokens: bs1 {best[1]:.2f}s, bs8 {best[8]:.2f}s; "
           f"identical outputs: {same}")


if __name__ == "__main__":
    main()
