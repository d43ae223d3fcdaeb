"""``radbench run``: dataset -> requests -> adapter -> prediction store -> scores -> results.

The runner validates every name and argument before loading a model, generates only what the run
directory does not already hold (resume is the default, keyed by content), writes each batch with
fsync before asking for the next, and derives scores and results from the stored predictions.
Under torchrun each rank generates its shard (see :mod:`radbench.distributed`) and rank 0 alone
merges, scores and writes the results.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from radbench import distributed, identity, images, placement, registry, results, scoring
from radbench.errors import SampleError, UsageError
from radbench.metrics.base import ScoreInput
from radbench.models.base import Adapter
from radbench.options import parse_kv
from radbench.progress import Progress
from radbench import safe_io
from radbench.lock import RunLock
from radbench.store import (
    RESULTS,
    SCORES,
    PredictionStore,
    prediction_key,
    remove_stale_temporaries,
    write_jsonl,
)
from radbench.tasks.base import (
    DataOptions,
    Dataset,
    Task,
    failed_row,
    load_split,
    select_exemplars,
)
from radbench.types import Prediction, Request, Sample, stable_hash

TIMINGS = "timings.jsonl"


@dataclass
class RunConfig:
    model: str
    task: str
    output: Path
    dataset: str | None = None
    data_root: str | None = None
    model_args: str | Mapping[str, str] | None = None  # --model-args text, or settings built in code
    gen_kwargs: dict[str, Any] = field(default_factory=dict)
    shots: int = 0
    limit: int | None = None
    batch_size: int | None = None
    seed: int = 0
    metrics: str | None = None
    quiet: bool = False
    # How the dataset is read (radbench.tasks.base.DataOptions): --image-root OLD=NEW rewrites,
    # --prompts DIR|radbench, --strict, --allow-outside-root, --window, --max-images.
    image_roots: Sequence[str] = ()
    prompts: str | None = None
    strict: bool = False
    allow_outside_root: bool = False
    window: str | None = None
    max_images: int | None = None
    # --metric-args by metric group (radbench.metrics.options.MetricSettings), collected by the CLI.
    metric_args: dict[str, dict[str, str]] = field(default_factory=dict)

    def data_options(self) -> DataOptions:
        return DataOptions(self.data_root, DataOptions.parse_image_roots(self.image_roots), self.prompts, self.strict,
                           self.allow_outside_root, self.window, self.seed, self.max_images)


@dataclass
class Plan:
    """Everything a run does, decided before the first generation."""

    task: Task
    dataset_name: str
    dataset: Dataset
    metric_ids: list[str]
    model_args: dict[str, str]
    samples: list[Sample]
    pool: list[Sample]
    adapter: Adapter
    requests: list[Request]
    keys: list[str]
    trained_on: str
    options: DataOptions = field(default_factory=DataOptions)


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


def _preprocessing(adapter: Adapter) -> images.Preprocess | None:
    """The image preprocessing an adapter declares (its ``preprocessing`` or ``spec`` attribute), if any."""
    for name in ("preprocessing", "spec"):
        spec = getattr(adapter, name, None)
        if isinstance(spec, images.Preprocess):
            return spec
    return None


def _image_records(request: Request, spec: images.Preprocess | None = None) -> list[dict[str, Any]]:
    """Reference, file hash, and (for a declared preprocessing) the slices a 2D model gets of a volume."""
    return [{**ref.to_json(), "sha256": images.file_sha256(ref), **(images.describe_input(ref, spec) if spec else {})}
            for ref in request.images]


def _check_images(samples: Sequence[Sample]) -> None:
    """--strict: every image exists inside its root before any model loads; else one line naming the row."""
    for sample in samples:
        for ref in sample.images:
            try:
                images.check(ref)
            except SampleError as exc:
                raise UsageError(f"{sample.metadata.get('source', sample.id)}: {exc}") from None


def _jsonable(metadata: dict[str, Any]) -> dict[str, Any]:
    """Sample metadata as stored in predictions.jsonl (a plugin's odd value becomes its string)."""
    return json.loads(json.dumps(metadata, default=str))


def _generate_batch(adapter: Adapter, batch: list[Request]) -> list[tuple[str, str | None]]:
    """Generations for a batch; if the batch fails on a bad input, each sample is retried alone.

    A :class:`SampleError` fails only its own sample (recorded, counted, scored as an empty answer).
    """
    try:
        outputs = adapter.generate(batch)
    except SampleError as exc:
        if len(batch) == 1:
            return [("", str(exc))]
        return [_generate_one(adapter, request) for request in batch]
    if len(outputs) != len(batch):
        raise RuntimeError(f"adapter {adapter.name!r} returned {len(outputs)} generations for {len(batch)} requests")
    return [(str(o), None) for o in outputs]


def _generate_one(adapter: Adapter, request: Request) -> tuple[str, str | None]:
    try:
        return str(adapter.generate([request])[0]), None
    except SampleError as exc:
        return "", str(exc)


def _validate(config: RunConfig) -> None:
    if config.shots < 0:
        raise UsageError(f"--shots must be >= 0, got {config.shots}")
    if config.limit is not None and config.limit <= 0:
        raise UsageError(f"--limit must be > 0, got {config.limit}")
    if config.batch_size is not None and config.batch_size <= 0:
        raise UsageError(f"--batch-size must be > 0, got {config.batch_size}")


def plan(config: RunConfig, world: distributed.World) -> Plan:
    """Resolve names, load the samples and the model, render every request (no generation yet)."""
    _validate(config)
    task = load_task(config.task, config.gen_kwargs)
    adapter_cls = adapter_class(config.model)
    refusal = adapter_cls.unsupported(config.shots, config.gen_kwargs)
    if refusal:
        raise UsageError(f"model {config.model!r} {refusal}")
    dataset_name = config.dataset or task.default_dataset
    dataset = registry.get("datasets", dataset_name)()
    if task.name not in dataset.tasks:
        raise UsageError(f"dataset {dataset_name!r} has no task {task.name!r}; it covers {', '.join(dataset.tasks)}")
    metric_ids = scoring.parse_metric_list(config.metrics, getattr(dataset, "default_metrics", None) or task.default_metrics)
    scoring.resolve_metrics(metric_ids, config.metric_args)
    model_args = parse_kv(config.model_args, "--model-args")
    trained_on = model_args.pop("trained_on", "unknown")
    placement.place_replica(config.model, adapter_cls, model_args, world)

    options = config.data_options()
    samples = load_split(dataset, task.name, "test", options)
    if config.limit is not None:
        samples = samples[: config.limit]
    if not samples:
        raise UsageError(f"dataset {dataset_name!r} has no {task.name!r} test samples")
    duplicated = [i for i, c in Counter(s.id for s in samples).items() if c > 1]
    if duplicated:
        raise UsageError(f"dataset {dataset_name!r}: duplicate sample id {duplicated[0]!r}")
    if options.strict:  # before the model loads: a long load must not end in a missing-image stop
        _check_images(samples)

    seed_everything(config.seed)
    adapter = placement.load_adapter(config.model, adapter_cls, model_args)
    wants_pool = config.shots > 0 or type(adapter).observe_exemplars is not Adapter.observe_exemplars
    pool = load_split(dataset, task.name, "train", options) if wants_pool else []
    if options.strict:
        _check_images(pool)
    if wants_pool:
        adapter.observe_exemplars([task.render_exemplar(ex) for ex in pool if failed_row(ex) is None])
    fingerprint = adapter.fingerprint()
    requests = [task.render(s, select_exemplars(s, pool, config.shots, config.seed)) for s in samples]
    keys = [prediction_key(s.id, r.prompt_hash(), fingerprint, r.gen_kwargs) for s, r in zip(samples, requests)]
    return Plan(task, dataset_name, dataset, metric_ids, model_args, samples, pool, adapter, requests, keys, trained_on,
                options)


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (if loaded) torch before the model is built; recorded in results."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def _prefetch(adapter: Adapter, requests: list[Request]) -> None:
    """Load and preprocess the next batch's images while the current batch generates.

    An adapter that declares its preprocessing (``spec``, an :class:`images.Preprocess`) gets its
    images prepared ahead into :func:`images.prefetch`'s cache; for any other adapter the OS is asked
    to page the files in (:func:`safe_io.advise_willneed`: nothing is read here). Problems are left
    for the adapter's own read, which reports them for their sample.
    """
    refs = list(dict.fromkeys(img for r in requests for img in r.images))
    spec = getattr(adapter, "spec", None)
    if isinstance(spec, images.Preprocess):
        images.prefetch(refs, spec)
        return
    for ref in refs:
        try:
            safe_io.advise_willneed(images.resolve(ref))
        except SampleError:
            pass


def generate(
    p: Plan, config: RunConfig, store: PredictionStore, work: list[int], files: distributed.RankFiles | None
) -> tuple[int, float, dict[str, Any]]:
    """Generate the planned requests at ``work`` indices that the store lacks.

    Returns (count, seconds, batching facts). Requests are sorted by image count and prompt length,
    so a batch that runs out of GPU memory is followed by larger ones: the batch size is halved for
    the rest of the run and the batch retried, instead of losing the run. A request that does not
    fit even alone stops the run in one line; the finished predictions are kept for a resume.
    """
    todo = [i for i in work if not store.done(p.keys[i])]
    todo.sort(key=lambda i: (len(p.requests[i].images), len(_prompt_text(p.requests[i]))))
    batch_size = min(config.batch_size or p.adapter.max_batch_size, p.adapter.max_batch_size)
    fingerprint = p.adapter.fingerprint()
    spec = _preprocessing(p.adapter)

    def record(i: int, text: str, error: str | None) -> Prediction:
        return Prediction(
            id=p.samples[i].id, key=p.keys[i], prediction=text, prompt=_prompt_text(p.requests[i]),
            prompt_hash=p.requests[i].prompt_hash(), images=_image_records(p.requests[i], spec),
            exemplar_ids=p.requests[i].exemplar_ids, gen_kwargs=p.requests[i].gen_kwargs,
            model_fingerprint=fingerprint, error=error, metadata=_jsonable(p.samples[i].metadata),
        )

    # A row the reader could not use is recorded as failed without reaching the model.
    unreadable = [i for i in todo if failed_row(p.samples[i]) is not None]
    store.append([record(i, "", failed_row(p.samples[i])) for i in unreadable])
    todo = [i for i in todo if failed_row(p.samples[i]) is None]
    batching: dict[str, Any] = {"batch_size": batch_size, "out_of_memory_halvings": []}
    started = time.monotonic()
    timings = config.output / TIMINGS
    with Progress(len(todo), f"{config.model} on {p.task.name}", quiet=config.quiet) as progress, \
            ThreadPoolExecutor(max_workers=1) as pool, store.writer():
        ahead: Future[None] | None = None
        pos, size = 0, batch_size
        while pos < len(todo):
            batch = todo[pos : pos + size]
            upcoming = todo[pos + size : pos + 2 * size]
            if upcoming and ahead is None:
                ahead = pool.submit(_prefetch, p.adapter, [p.requests[i] for i in upcoming])
            t0 = time.monotonic()
            outputs = None
            try:
                outputs = _generate_batch(p.adapter, [p.requests[i] for i in batch])
            except Exception as exc:
                if not placement.out_of_memory(exc):
                    raise
            if outputs is None:  # out of memory; outside the except block, so its traceback's tensors can go
                placement.release_memory()
                if size == 1:
                    sample = p.samples[batch[0]]
                    raise UsageError(
                        f"{sample.metadata.get('source', sample.id)}: out of GPU memory even alone (batch size 1); "
                        "use dtype=bf16, more GPUs per replica (gpus_per_replica=K) or a larger GPU; "
                        f"{sum(store.done(p.keys[i]) for i in work)} finished predictions are kept: re-run the same "
                        "command to resume"
                    ) from None
                size = max(1, size // 2)
                batching["out_of_memory_halvings"].append({"at_request": pos, "batch_size": size})
                progress.note(f"out of GPU memory: batch size now {size}")
                continue
            seconds = time.monotonic() - t0
            if config.strict:
                for i, (_, error) in zip(batch, outputs):
                    if error is not None:
                        raise UsageError(f"{p.samples[i].metadata.get('source', p.samples[i].id)}: {error}")
            store.append([record(i, text, error) for i, (text, error) in zip(batch, outputs)])
            with open(timings, "a", encoding="utf-8") as fh:  # telemetry: O_APPEND lines, not fsynced
                fh.write(json.dumps({"keys": [p.keys[i] for i in batch], "seconds": round(seconds, 6),
                                     "rank": files.world.rank if files else 0}) + "\n")
            if files is not None:
                files.heartbeat()
            progress.advance(len(batch))
            pos += len(batch)
            if ahead is not None:
                ahead.result()
                ahead = None
    batching["final_batch_size"] = size
    return len(todo) + len(unreadable), time.monotonic() - started, batching


def finish(p: Plan, config: RunConfig, store: PredictionStore, timing: dict[str, Any]) -> dict[str, Any]:
    """Score the stored predictions in dataset order and write ``scores.jsonl`` and ``results.json``."""
    store.finalize(p.keys)
    records = [store.records[k] for k in p.keys]
    scored = [
        scoring.Scored(
            ScoreInput(s.id, rec["prediction"] if rec.get("error") is None else "", s.references, s.options,
                       s.answer_type, s.question, s.subset, s.metadata),
            subset=s.subset, cluster=s.cluster_id, failed=rec.get("error") is not None,
        )
        for s, rec in zip(p.samples, records)
    ]
    report = scoring.score(scored, p.metric_ids, seed=config.seed, settings=config.metric_args)
    write_jsonl(config.output / SCORES, report.records)
    failed = {s.id: rec["error"] for s, rec in zip(p.samples, records) if rec.get("error") is not None}
    provenance = results.provenance(
        task=p.task.describe(),
        dataset={"name": p.dataset_name, "split": "test", "manifest_hash": manifest_hash(p.samples),
                 "is_demo": bool(getattr(p.dataset, "is_demo", False)), "limit": config.limit,
                 **identity.dataset_hub(p.dataset, p.options)},
        model={**p.adapter.describe(), "trained_on": p.trained_on,
               **({"ignored_gen_kwargs": ignored} if (ignored := type(p.adapter).ignored_gen_kwargs(
                   p.requests[0].gen_kwargs)) else {})},
        n_samples=len(p.samples),
        seed=config.seed,
        shots=config.shots,
        config={"model_args": p.model_args, "batch_size": config.batch_size, "limit": config.limit,
                "metrics": p.metric_ids, "data_root": config.data_root},
        gen_kwargs=p.requests[0].gen_kwargs,
        prompt_hash=stable_hash([r.prompt_hash() for r in p.requests]),
        exemplar_manifest_hash=manifest_hash(p.pool) if p.pool else None,
        prompts=registry.service("prompts.provenance")(p.options),
        data_options={"strict": p.options.strict, "window": p.options.window,
                      "allow_outside_root": p.options.allow_outside_root,
                      "max_images": p.options.image_cap(getattr(p.dataset, "max_images", None)),
                      "samples_with_images_capped": sum("images_capped" in s.metadata for s in p.samples),
                      "image_root_rewrites": len(p.options.image_roots),
                      "exemplar_rows_failed": sum(failed_row(ex) is not None for ex in p.pool)},
        preprocessing=({**spec.describe(), "fingerprint": spec.fingerprint()}
                       if (spec := _preprocessing(p.adapter)) else None),
    )
    failures = {"count": len(failed), "policy": ("a sample the model could not process is scored as an empty prediction; "
                           "an unusable dataset row (no reference) is left out of the metrics; both are counted here"),
                "samples": failed}
    out = results.build(report, provenance, failures, timing)
    results.write(config.output / RESULTS, out)
    return out


# A rank this many times slower than the fastest one is reported: it usually means a device bug
# (a rank on the wrong GPU, on the CPU, or sharing a GPU), not slower samples (shards are strided).
IMBALANCE = 1.5


def _warn_if_imbalanced(ranks: list[dict[str, Any]], minimum: int = 8) -> None:
    """One stderr line when some rank generated much slower than the fastest."""
    rates = {r["rank"]: r["generated"] / r["seconds"] for r in ranks if r["generated"] >= minimum and r["seconds"] > 0}
    if len(rates) < 2:
        return
    fastest, slowest = max(rates, key=rates.get), min(rates, key=rates.get)  # type: ignore[arg-type]
    if rates[fastest] > IMBALANCE * rates[slowest]:
        print(f"radbench: warning: rank {slowest} generated {rates[slowest]:.2f} samples/s, rank {fastest} "
              f"{rates[fastest]:.2f} ({rates[fastest] / rates[slowest]:.1f}x): check rank {slowest}'s device "
              "(timing.ranks in results.json)", file=sys.stderr, flush=True)


def run(config: RunConfig) -> dict[str, Any] | None:
    """Run one evaluation; returns the results on rank 0 (``None`` on other ranks)."""
    world = distributed.current_world()
    run_identity = identity.check(config)  # another run's directory: refused before anything loads or is written
    p = plan(config, world)
    config.output.mkdir(parents=True, exist_ok=True)
    lock = RunLock(config.output)
    lock_error: UsageError | None = None
    if world.is_main:
        try:
            lock.acquire()
            identity.record(config.output, run_identity)
            remove_stale_temporaries(config.output)
        except UsageError as exc:
            lock_error = exc
    # Every rank takes part in the handshake, so a rank-0 failure cannot leave the others waiting.
    work_hash = stable_hash([p.keys, p.adapter.fingerprint()]) if lock_error is None else f"error:{lock_error}"
    try:
        attempt = distributed.handshake(world, work_hash)
    except UsageError:
        if lock_error is not None:
            raise lock_error from None
        raise
    if lock_error is not None:
        raise lock_error
    try:
        files = distributed.RankFiles(config.output, world, attempt) if world.distributed else None
        store = PredictionStore(config.output, files.part_path() if files else None)
        store.load()
        done = sum(store.done(k) for k in p.keys)
        if done and world.is_main and not config.quiet:
            print(f"radbench: resuming: {done} of {len(p.keys)} done", file=sys.stderr, flush=True)
        work = distributed.shard(list(range(len(p.samples))), world)
        generated, seconds, batching = generate(p, config, store, work, files)
        ranks = [{"rank": world.rank, "generated": generated, "seconds": round(seconds, 3), "batching": batching}]
        if files is not None:
            files.mark_done(ranks[0])
            if not world.is_main:
                return None
            ranks = files.wait_for_all()
            store.load()  # every rank's part file, now complete
            files.cleanup()
            _warn_if_imbalanced(ranks)
        generated = sum(r["generated"] for r in ranks)
        timing = {"generation_seconds": round(seconds, 3), "generated_now": generated,
                  "resumed": len(p.samples) - generated, "world_size": world.size, "ranks": ranks}
        return finish(p, config, store, timing)
    finally:
        lock.release()
