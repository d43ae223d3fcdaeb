"""The adapter protocol every model implements, and helpers adapters share.

An adapter receives the whole list of requests and owns batching (lm-eval's design): it knows its
memory, its padding side and which requests can share a batch. It sees only model-neutral
:class:`~radbench.types.Request` objects, never tasks or metrics. This module must stay importable
without torch: ``radbench list`` imports nothing heavier than the registry.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Sequence

from radbench import options
from radbench.errors import UsageError
from radbench.types import Request


class Adapter:
    """Base class of model adapters.

    Subclasses set ``name`` and ``version`` (bumped when the adapter's behaviour changes, e.g. its
    prompt format), implement :meth:`generate`, and build themselves in :meth:`from_args` from the
    ``--model-args`` mapping, raising :class:`UsageError` for a missing or wrong checkpoint.
    """

    name: str = ""
    version: str = "1"
    max_batch_size: int = 1
    # True when from_args accepts ``device_map=auto`` and ``gpus=0,1,...`` (one replica over several
    # GPUs, from ``--model-args gpus_per_replica=K``): the released-checkpoint adapters do.
    supports_device_map: bool = False
    # What the adapter does with the run's settings, declared so the runner refuses a setting the
    # adapter would silently ignore instead of recording it as if it had run (docs/models.md).
    # True when few-shot exemplar turns reach the model (its prompt format has a place for them).
    supports_shots: bool = True
    # The gen_kwargs keys the adapter applies (max_new_tokens among them); None when it hands every
    # key to code radbench cannot inspect (a user callable), which then decides for itself.
    gen_kwargs_honoured: frozenset[str] | None = None

    @classmethod
    def unsupported(cls, shots: int, gen_kwargs: dict[str, Any]) -> str | None:
        """Why this adapter cannot run ``--shots``/``--gen-kwargs`` as asked, or ``None`` when it can.

        Only what the user asked for is checked: a task's own default ``max_new_tokens`` is part of
        the task's protocol, recorded as such, and listed in ``results.json`` under
        ``model.ignored_gen_kwargs`` for an adapter that does not apply it.
        """
        if shots > 0 and not cls.supports_shots:
            return f"ignores few-shot exemplars, so --shots {shots} would not run as recorded; use --shots 0"
        ignored = cls.ignored_gen_kwargs(gen_kwargs)
        if ignored:
            honoured = ", ".join(sorted(cls.gen_kwargs_honoured or ())) or "none"
            return (f"ignores --gen-kwargs {', '.join(ignored)} (it applies: {honoured}); "
                    "remove them so the run records what actually ran")
        return None

    @classmethod
    def ignored_gen_kwargs(cls, gen_kwargs: dict[str, Any]) -> list[str]:
        """The keys of ``gen_kwargs`` this adapter does not apply."""
        if cls.gen_kwargs_honoured is None:
            return []
        return sorted(k for k in gen_kwargs if k not in cls.gen_kwargs_honoured)

    @classmethod
    def from_args(cls, **model_args: str) -> "Adapter":
        if model_args:
            raise UsageError(f"model {cls.name!r} takes no --model-args (got {', '.join(model_args)})")
        return cls()

    def generate(self, requests: Sequence[Request]) -> list[str]:
        """One generated string per request, in order. Raise :class:`SampleError` for a bad input."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """Identifies the loaded weights; part of every prediction's key."""
        raise NotImplementedError

    def observe_exemplars(self, exemplars: Sequence[Request]) -> None:
        """Called once with the exemplar split, each a one-turn request whose turn carries its answer.

        Baselines that learn from the exemplar split override this; models ignore it.
        """

    def describe(self) -> dict[str, Any]:
        """What goes into ``results.json`` about the model."""
        return {"name": self.name, "version": self.version, "fingerprint": self.fingerprint()}


def parse_model_args(text: str | None) -> dict[str, str]:
    """``k=v,k2=v2`` -> dict (a value may hold commas: ``gpus=0,1``); a malformed item is a one-line error."""
    return options.parse_kv(text, "--model-args")


def file_fingerprint(paths: Sequence[Path], full: bool = False) -> str:
    """SHA-256 over weight files: name, size, and the first and last 16 MiB of each (``full``: all).

    Hashing every byte of a 26 GB checkpoint takes minutes; name, size and both ends tell apart any
    two real checkpoints in practice. ``full=True`` (``--model-args full_fingerprint=1``) hashes all.
    """
    digest = hashlib.sha256()
    window = 16 << 20
    for path in sorted(paths):
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as fh:
            if full or size <= 2 * window:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
            else:
                digest.update(fh.read(window))
                fh.seek(size - window)
                digest.update(fh.read(window))
    return digest.hexdigest()


def require_checkpoint(model: str, model_args: dict[str, str], expected: Sequence[str]) -> Path:
    """The checkpoint folder from ``--model-args checkpoint=PATH``, checked for the expected files."""
    files = ", ".join(expected)
    if "checkpoint" not in model_args:
        raise UsageError(f"model {model!r} needs --model-args checkpoint=PATH (a folder with {files})")
    root = Path(model_args["checkpoint"]).expanduser()
    if not root.exists():
        raise UsageError(f"model {model!r}: checkpoint path {root} does not exist (expected a folder with {files})")
    base = root if root.is_dir() else root.parent
    missing = [f for f in expected if not (base / f).exists()]
    if missing:
        raise UsageError(f"model {model!r}: {base} lacks {', '.join(missing)} (expected {files})")
    return base
