"""Runner overhead and data-parallel scaling.

(4) ``radbench run`` wall time vs the adapter's pure ``generate()`` time, for a model that takes
    60 ms per sample, on 320 image questions (target <= 1.05): what the harness adds around a model
    (data loading, prompt rendering, image hashing, the fsynced log, scoring with bootstrap CIs).
(6) 2 ranks vs 1 rank on CPU under torchrun with the gloo handshake: results must be identical;
    the time ratio is reported as measured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import report  # noqa: E402
from radbench.models.base import Adapter  # noqa: E402
from radbench.types import Request  # noqa: E402

PER_SAMPLE = 0.06


class SleepAdapter(Adapter):
    """Stands in for a model that needs PER_SAMPLE seconds of compute per request."""

    name = "sleep"
    max_batch_size = 1

    def generate(self, requests: Sequence[Request]) -> list[str]:
        time.sleep(PER_SAMPLE * len(requests))
        return [r.query.text("").split()[-1] for r in requests]

    def fingerprint(self) -> str:
        return "sleep-adapter"


def user_dataset(folder: Path, n: int) -> Path:
    """A VQA folder of ``n`` image questions (demo radiographs), large enough that fixed costs amortise."""
    import json
    import shutil

    from radbench.tasks.demo import image_root

    (folder / "images").mkdir(parents=True)
    sources = sorted((image_root() / "images").glob("cxr*.png"))[:8]
    for src in sources:
        shutil.copy(src, folder / "images" / src.name)
    rows = [{"id": f"q{i:04d}", "image": f"images/{sources[i % len(sources)].name}",
             "question": f"Is there a pleural effusion? (item {i})", "answer": "yes" if i % 3 else "no"}
            for i in range(n)]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "radbench.yaml").write_text("task: vqa\ndata: test.jsonl\ncolumns: {id: id, question: question, "
                                          "answer: answer, image: image}\n")
    return folder


def runner_overhead(tmp: Path) -> None:
    from radbench import runner

    data = user_dataset(tmp / "data", 320)
    config = runner.RunConfig(model="benchmarks.bench_runner:SleepAdapter", task="vqa", dataset=str(data),
                              output=tmp / "overhead", quiet=True)
    world = runner.distributed.current_world()
    plan = runner.plan(config, world)
    t0 = time.perf_counter()
    for request in plan.requests:
        plan.adapter.generate([request])
    pure = time.perf_counter() - t0
    t0 = time.perf_counter()
    runner.run(config)
    wall = time.perf_counter() - t0
    ratio = wall / pure
    report("(4) run wall / pure generate", ratio, "<= 1.05", ratio <= 1.05,
           f"{len(plan.requests)} samples at {PER_SAMPLE * 1000:.0f} ms: run {wall:.2f}s, generate {pure:.2f}s")


def ranks(tmp: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    base = [sys.executable, "-m", "radbench", "run", "--model", "benchmarks.bench_runner:SleepAdapter", "--task",
            "vqa", "--dataset", "demo", "--quiet"]
    times = {}
    for nproc in (1, 2):
        out = tmp / f"ranks{nproc}"
        extra = ["--launcher", "torchrun", "--nproc", "2"] if nproc == 2 else []
        t0 = time.perf_counter()
        subprocess.run([*base, "--output", str(out), *extra], env=env, cwd=root, check=True)
        times[nproc] = time.perf_counter() - t0
    one = json.loads((tmp / "ranks1" / "results.json").read_text())
    two = json.loads((tmp / "ranks2" / "results.json").read_text())
    same = one["metrics"] == two["metrics"] and (
        (tmp / "ranks1" / "predictions.jsonl").read_bytes() == (tmp / "ranks2" / "predictions.jsonl").read_bytes())
    ratio = times[2] / times[1]
    report("(6) 2 ranks / 1 rank (CPU, wall)", ratio, "equal results", same,
           f"1 rank {times[1]:.2f}s, 2 ranks {times[2]:.2f}s (includes torchrun and gloo start-up); "
           f"results identical: {same}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        runner_overhead(Path(tmp))
        ranks(Path(tmp))


if __name__ == "__main__":
    main()
