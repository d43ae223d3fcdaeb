"""``radbench run``: dataset -> requests -> adapter -> prediction store -> scores -> results.

The runner validates every name and argument before loading a model, generates only what the run
directory does not already hold (resume is the default, keyed by content), writes each batch with
fsync before asking for the next, and derives scores and results from the stored predictions.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from radbench import images, registry, results, scoring
from radbench.errors import SampleError, UsageError
from radbench.metrics.base import ScoreInput
from radbench.models.base import Adapter, parse_model_args
from radbench.progress import Progress
from radbench.store import RESULTS, SCORES, PredictionStore, RunLock, prediction_key, write_jsonl
from radbench.tasks.base import Task, select_exemplars
from radbench.types import Prediction, Request, Sample, stable_hash


@dataclass
class RunConfig:
    model: str
    task: str
    output: Path
    dataset: str | None = None
    data_root: str | None = None
    model_args: str | None = None
    gen_kwargs: dict[str, Any] = field(default_factory=dict)
    shots: int = 0
    limit: int | None = None
    batch_size: int | None = None
    seed: int = 0
    metrics: str | None = None
    quiet: bool = False


def load_task(name: str, gen_kwargs: dict[str, Any] | None = None) -> Task:
    task_cls = registry.get("tasks", name)
    return task_cls(gen_kwargs=dict(gen_kwargs or {}))


def adapter_class(name: str) -> type[Adapter]:
    adapter_cls = registry.get("models", name)
    if not (isinstance(adapter_cls, type) and issubclass(adapter_cls, Adapter)):
        raise UsageError(f"model {name!r} is not a radbench Adapter subclass")
    return adapter_cls


def manifest_hash(samples: Sequence[Sample]) -> str:
    return stable_hash([s.content() for s in samples])


def _prompt_text(request: Request) -> str:
    parts = []
    for turn in request.turns:
        parts.append(turn.text("<image>"))
        if turn.answer is not None:
            parts.append(turn.answer)
    return "\n".join(parts)


def _image_records(request: Request) -> list[dict[str, Any]]:
    return [{**ref.to_json(), "sha256": images.file_sha256(ref)} for ref in request.images]


def _generate_batch(adapter: Adapter, batch: list[Request]) -> list[tuple[str, str | None]]:
    """Generations for a batch; if the batch fails on a bad input, each sample is retried alone.

    A :class:`SampleError` fails only its own sample (recorded, counted, scored as an empty answer).
    """
    try:
        outputs = adapter.generate(batch)
    except SampleError:
        if len(batch) == 1:
            raise
        return [_generate_one(adapter, request) for request in batch]
    if len(outputs) != len(batch):
        raise RuntimeError(f"adapter {adapter.name!r} returned {len(outputs)} generations for {len(batch)} requests")
    return [(str(o), None) for o in outputs]


def _generate_one(adapter: Adapter, request: Request) -> tuple[str, str | None]:
    try:
        return str(adapter.generate([request])[0]), None
    except SampleError as exc:
        return "", str(exc)


def run(config: RunConfig) -> dict[str, Any]:
    # 1. Validate everything cheap before loading any model.
    if config.shots < 0:
        raise UsageError(f"--shots must be >= 0, got {config.shots}")
    if config.limit is not None and config.limit <= 0:
        raise UsageError(f"--limit must be > 0, got {config.limit}")
    if config.batch_size is not None and config.batch_size <= 0:
        raise UsageError(f"--batch-size must be > 0, got {config.batch_size}")
    task = load_task(config.task, config.gen_kwargs)
    adapter_cls = adapter_class(config.model)
    dataset_name = config.dataset or task.default_dataset
    dataset = registry.get("datasets", dataset_name)()
    if task.name not in dataset.tasks:
        raise UsageError(f"dataset {dataset_name!r} has no task {task.name!r}; it covers {', '.join(dataset.tasks)}")
    metric_ids = scoring.parse_metric_list(config.metrics, task.default_metrics)
    scoring.resolve_metrics(metric_ids)
    model_args = parse_model_args(config.model_args)
    trained_on = model_args.pop("trained_on", "unknown")

    samples = dataset.load(task.name, "test", config.data_root)
    if config.limit is not None:
        samples = samples[: config.limit]
    if not samples:
        raise UsageError(f"dataset {dataset_name!r} has no {task.name!r} test samples")
    ids = Counter(s.id for s in samples)
    duplicated = [i for i, c in ids.items() if c > 1]
    if duplicated:
        raise UsageError(f"dataset {dataset_name!r}: duplicate sample id {duplicated[0]!r}")

    # 2. The model, and the exemplar split if few-shot prompts or a baseline need it.
    adapter = adapter_cls.from_args(**model_args)
    wants_pool = config.shots > 0 or type(adapter).observe_exemplars is not Adapter.observe_exemplars
    pool = dataset.load(task.name, "train", config.data_root) if wants_pool else []
    if wants_pool:
        adapter.observe_exemplars([task.render_exemplar(ex) for ex in pool])
    fingerprint = adapter.fingerprint()

    requests = [task.render(s, select_exemplars(s, pool, config.shots, config.seed)) for s in samples]
    keys = [prediction_key(s.id, r.prompt_hash(), fingerprint, r.gen_kwargs) for s, r in zip(samples, requests)]

    # 3. Generate what the run directory does not hold yet.
    config.output.mkdir(parents=True, exist_ok=True)
    lock = RunLock(config.output)
    lock.acquire()
    try:
        store = PredictionStore(config.output)
        store.load()
        todo = [(s, r, k) for s, r, k in zip(samples, requests, keys) if not store.done(k)]
        todo.sort(key=lambda t: (len(t[1].images), len(_prompt_text(t[1]))))
        batch_size = min(config.batch_size or adapter.max_batch_size, adapter.max_batch_size)
        started = time.monotonic()
        with Progress(len(todo), f"{config.model} on {task.name}", quiet=config.quiet) as progress:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start : start + batch_size]
                t0 = time.monotonic()
                outputs = _generate_batch(adapter, [r for _, r, _ in chunk])
                per_sample = (time.monotonic() - t0) / len(chunk)
                store.append(
                    [
                        Prediction(
                            id=s.id, key=k, prediction=text, prompt=_prompt_text(r), prompt_hash=r.prompt_hash(),
                            images=_image_records(r), exemplar_ids=r.exemplar_ids, gen_kwargs=r.gen_kwargs,
                            model_fingerprint=fingerprint, seconds=round(per_sample, 6), error=error,
                        )
                        for (s, r, k), (text, error) in zip(chunk, outputs)
                    ]
                )
                progress.advance(len(chunk))
        generation_seconds = time.monotonic() - started
        store.compact()

        # 4. Score from the store, in dataset order, and derive the results.
        records = [store.records[k] for k in keys]
        scored = [
            scoring.Scored(
                ScoreInput(s.id, rec["prediction"] if rec.get("error") is None else "", s.references, s.options,
                           s.answer_type, s.question, s.subset, s.metadata),
                subset=s.subset, cluster=s.cluster_id, failed=rec.get("error") is not None,
            )
            for s, rec in zip(samples, records)
        ]
        report = scoring.score(scored, metric_ids, seed=config.seed)
        write_jsonl(config.output / SCORES, report.records)
        failed = [(s.id, rec["error"]) for s, rec in zip(samples, records) if rec.get("error") is not None]
        provenance = {
            "task": task.describe(),
            "dataset": {"name": dataset_name, "split": "test", "manifest_hash": manifest_hash(samples),
                        "is_demo": bool(getattr(dataset, "is_demo", False)), "limit": config.limit},
            "model": {**adapter.describe(), "trained_on": trained_on},
            "n_samples": len(samples),
            "seed": config.seed,
            "shots": config.shots,
            "gen_kwargs": requests[0].gen_kwargs,
            "prompt_hash": stable_hash([r.prompt_hash() for r in requests]),
            "exemplar_manifest_hash": manifest_hash(pool) if pool else None,
        }
        failures = {
            "count": len(failed),
            "policy": "a failed sample is scored as an empty prediction and counted here",
            "samples": dict(failed),
        }
        timing = {"generation_seconds": round(generation_seconds, 3), "generated_now": len(todo),
                  "resumed": len(samples) - len(todo)}
        out = results.build(report, provenance, failures, timing)
        results.write(config.output / RESULTS, out)
        return out
    finally:
        lock.release()
