"""What a run directory holds a run *of*: one model, task, dataset and configuration.

Predictions are keyed by content, so a second run of another model into the same ``--output`` would
add its records next to the first run's and overwrite ``results.json``. :func:`check` refuses that
in one line before anything is loaded or written; :func:`record` then writes the identity
(``run.json``) once the run holds the directory's lock. Resuming the same configuration is the
default and stays allowed: only what changes the predictions is part of the identity, not what
changes how fast they come (devices, batch size), how many are asked for (``--limit``) or how they
are scored (``--metrics``), which a resume may change.

:func:`dataset_hub` is the Hub origin of a dataset's files, recorded in ``results.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radbench import registry
from radbench import safe_io
from radbench.errors import UsageError
from radbench.options import parse_kv
from radbench.security import redact
from radbench.store import PREDICTIONS, RESULTS

if TYPE_CHECKING:
    from radbench.runner import RunConfig
    from radbench.tasks.base import DataOptions

IDENTITY = "run.json"
# --model-args keys that place or pace the model but never change what it generates.
RUNTIME_KEYS = frozenset({"device", "device_map", "gpus", "gpus_per_replica", "batch_size", "full_fingerprint",
                          "trained_on"})


def check_output(output: Path, flag: str = "--output") -> None:
    """``output`` must be a folder or not exist yet; a file (or a file on its path) is one line."""
    for path in (output, *output.parents):
        if path.exists():
            if not path.is_dir():
                what = "is a file" if path == output else f"cannot be created: {path} is a file"
                raise UsageError(f"{flag} {output}: {what}, not a run directory")
            return


def of(config: RunConfig) -> dict[str, Any]:
    """The identity of ``config``: every setting that changes the predictions, normalised.

    Secrets (an ``api_key=`` model-arg, a key inside a URL) are redacted like everything else written
    to disk: ``run.json`` must not hold them, and a rotated key is still the same run.
    """
    task = registry.get("tasks", config.task)
    dataset = config.dataset or getattr(task, "default_dataset", None)
    model_args = {k: v for k, v in parse_kv(config.model_args, "--model-args").items() if k not in RUNTIME_KEYS}
    return redact({
        "model": config.model,
        "model_args": dict(sorted(model_args.items())),
        "task": config.task,
        "dataset": dataset,
        "data_root": _normal_root(config.data_root),
        "shots": config.shots,
        "seed": config.seed,
        "gen_kwargs": {k: config.gen_kwargs[k] for k in sorted(config.gen_kwargs)},
        "prompts": config.prompts,
        "window": config.window,
        "max_images": config.max_images,
    })


def _normal_root(data_root: str | None) -> str | None:
    if data_root is None or data_root.startswith("hf:"):
        return data_root
    path = Path(data_root).expanduser()
    return str(path.resolve()) if path.exists() else data_root


def _describe(identity: dict[str, Any]) -> str:
    return f"{identity.get('model')} on {identity.get('task')}/{identity.get('dataset')}"


def check(config: RunConfig) -> dict[str, Any]:
    """Refuse, in one line and touching nothing, an ``--output`` that holds another run; the identity."""
    check_output(config.output)
    mine = of(config)
    if not config.output.is_dir():
        return mine
    _refuse_if_other(config.output, mine, _recorded(config.output))
    return mine


def _refuse_if_other(output: Path, mine: dict[str, Any], theirs: dict[str, Any] | None) -> None:
    differing = [key for key in mine if theirs is not None and key in theirs and theirs[key] != mine[key]]
    if differing:
        key = differing[0]
        assert theirs is not None
        raise UsageError(
            f"--output {output} holds a run of {_describe(theirs)} with another {key} "
            f"({_show(theirs[key])}, this run: {_show(mine[key])}); use another --output, or the same settings to resume"
        )


def _show(value: Any) -> str:
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _recorded(output: Path) -> dict[str, Any] | None:
    """The identity of the run in ``output``: ``run.json``, else what an older ``results.json`` says."""
    path = output / IDENTITY
    if path.is_file():
        try:
            data = safe_io.loads_json(path.read_text(encoding="utf-8"), allow_nan=True)
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: unreadable run identity ({exc}); delete it to adopt this run's") from None
        if not isinstance(data, dict):
            raise UsageError(f"{path}: not a run identity (a JSON object); delete it to adopt this run's")
        return data
    results = output / RESULTS
    if results.is_file():
        try:
            data = safe_io.loads_json(results.read_text(encoding="utf-8"), allow_nan=True)
            return {"model": data["model"]["name"], "task": data["task"]["name"], "dataset": data["dataset"]["name"]}
        except (OSError, ValueError, KeyError, TypeError):
            raise UsageError(f"{results}: not a radbench results file; use another --output") from None
    if (output / PREDICTIONS).is_file():
        return {}  # predictions of an unknown run: the prediction keys still keep other models' records apart
    return None


def record(output: Path, identity: dict[str, Any]) -> None:
    """Write ``run.json`` (atomically) if it is not there yet; call with the run lock held.

    Checked again under the lock: another run may have claimed the directory since :func:`check`.
    """
    path = output / IDENTITY
    if path.is_file():
        _refuse_if_other(output, identity, _recorded(output))
        return
    tmp = path.with_name(f".{IDENTITY}.tmp")
    tmp.write_text(json.dumps(identity, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def dataset_hub(dataset: Any, options: DataOptions) -> dict[str, Any]:
    """``{"hub": origin}`` when the dataset's files came from a Hugging Face repo, else ``{}``."""
    locate = getattr(dataset, "locate", None)
    if locate is None:
        return {}
    origin = locate(options).origin
    return {"hub": origin.provenance()} if origin.repo_id else {}
