"""Evaluate any Python function as a model: ``--model python --model-args fn=package.module:callable``.

A training team can score a checkpoint between epochs without writing an adapter class: radbench
loads the images, renders each request to text with ``<image>`` placeholders, and calls the function
with the whole batch. The function returns one string per input, in order.

``fn`` is imported as ``python -m`` would: a module in the working directory is found first.
It names either

* a function ``fn(inputs: list[CallableInput]) -> list[str]``, or
* a class, instantiated once with the remaining ``--model-args`` as keyword strings (so a checkpoint
  loads once per run, e.g. ``fn=mylab.eval:Model,checkpoint=/ckpt/step-4000``); its instances are
  then called like the function.

A per-sample failure (an input the model cannot take) is reported by raising
:class:`radbench.errors.SampleError`; the runner then retries the batch one input at a time and records
only the failing sample. Any other exception is a bug in the function and stops the run (the
predictions finished before it stay on disk).

Fingerprint: the callable's own ``fingerprint()`` if it has one (return a checkpoint hash there);
otherwise a hash of the target name, its module's source file, the other ``--model-args``, and the
content (name, size, both ends) of every argument value that names an existing file or folder, so
two different checkpoints never share predictions.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from radbench.targets import load_target
from radbench.errors import UsageError
from radbench.models.base import Adapter, file_fingerprint
from radbench.types import Request, stable_hash

IMAGE_PLACEHOLDER = "<image>"


@dataclass(frozen=True)
class CallableInput:
    """One request as a plain function sees it.

    ``text`` is the whole prompt: each exemplar turn's text followed by its answer on the next line,
    then the query turn's text, turns separated by a blank line, with ``<image>`` where each image
    goes. ``images`` holds one array per placeholder, in the same order, as
    :func:`radbench.images.load` returns them: float32, channels first, ``(C, H, W)`` for 2D and
    ``(C, H, W, D)`` for 3D, intensities as stored. ``request`` is the full model-neutral request,
    for functions that want the structure (turns, answer options, task) rather than flat text.
    """

    text: str
    images: list[np.ndarray]
    max_new_tokens: int | None
    gen_kwargs: dict[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    request: Request | None = None


def render_text(request: Request) -> str:
    """Exemplars with their answers, then the query; ``<image>`` marks each image in order."""
    blocks = []
    for turn in request.turns:
        text = turn.text(IMAGE_PLACEHOLDER)
        blocks.append(text if turn.answer is None else f"{text}\n{turn.answer}")
    return "\n\n".join(blocks)


def to_input(request: Request) -> CallableInput:
    from radbench import images

    max_new = request.gen_kwargs.get("max_new_tokens")
    return CallableInput(
        text=render_text(request),
        images=[images.load(ref) for ref in request.images],
        max_new_tokens=None if max_new is None else int(max_new),
        gen_kwargs=dict(request.gen_kwargs),
        options=request.options,
        request=request,
    )


def _source_digest(target: Any) -> str:
    """SHA-256 of the file defining ``target``, so editing the model code changes the fingerprint."""
    try:
        source = inspect.getsourcefile(target)
    except TypeError:
        source = None
    if not source or not Path(source).is_file():
        return ""
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def _path_digest(value: str) -> str | None:
    path = Path(value).expanduser()
    try:
        if path.is_file():
            return file_fingerprint([path])
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file())
            return stable_hash([[str(p.relative_to(path)), file_fingerprint([p])] for p in files])
    except OSError:
        return None
    return None


def _import_from_cwd() -> None:
    """Let ``fn=mylab.toy:Model`` find ``./mylab`` as ``python -m`` would: the working directory first.

    The ``radbench`` console script puts its own folder, not the working directory, at the head of
    ``sys.path``, so a model module sitting next to the user (the common case while training) was
    not importable; ``python -m radbench`` already has it (as ``""``).
    """
    cwd = os.getcwd()
    if "" not in sys.path and not any(p and os.path.abspath(p) == cwd for p in sys.path):
        sys.path.insert(0, cwd)


class PythonCallableAdapter(Adapter):
    """Wraps a user function (or a class instance) that maps a batch of inputs to strings."""

    name = "python"
    version = "1"
    # Exemplars reach the function in CallableInput.text and every gen_kwargs key in .gen_kwargs:
    # what it does with them is the user's code, so nothing is refused here.
    supports_shots = True
    gen_kwargs_honoured = None

    def __init__(self, target: str, fn: Callable[[list[CallableInput]], list[str]], args: dict[str, str],
                 source_digest: str, batch_size: int = 8) -> None:
        self.target = target
        self.fn = fn
        self.args = args
        self.max_batch_size = batch_size
        own = getattr(fn, "fingerprint", None)
        if callable(own):
            self._fingerprint = stable_hash(["python", target, str(own())])
        else:
            paths = {k: _path_digest(v) for k, v in sorted(args.items())}
            self._fingerprint = stable_hash(["python", target, source_digest, sorted(args.items()), paths])

    @classmethod
    def from_args(cls, **model_args: str) -> Adapter:
        args = dict(model_args)
        target = args.pop("fn", "")
        if ":" not in target:
            raise UsageError("model 'python' needs --model-args fn=package.module:callable")
        try:
            batch_size = int(args.pop("batch_size", "8"))
        except ValueError:
            raise UsageError(f"model 'python': --model-args batch_size={model_args['batch_size']!r} is not an integer") from None
        if batch_size < 1:
            raise UsageError(f"model 'python': batch_size must be >= 1, got {batch_size}")
        _import_from_cwd()
        obj = load_target(target, f"model 'python' fn={target!r}")
        if inspect.isclass(obj):
            try:
                fn = obj(**args)
            except TypeError as exc:
                raise UsageError(f"model 'python': {target}({', '.join(args)}) failed: {exc}") from exc
        elif args:
            raise UsageError(
                f"model 'python': {target} is a function, so it takes no other --model-args "
                f"(got {', '.join(sorted(args))}); point fn= at a class to pass arguments"
            )
        else:
            fn = obj
        if not callable(fn):
            raise UsageError(f"model 'python': {target} is not callable")
        return cls(target, fn, args, _source_digest(obj), batch_size)

    def generate(self, requests: Sequence[Request]) -> list[str]:
        inputs = [to_input(r) for r in requests]
        outputs = self.fn(inputs)
        if not isinstance(outputs, (list, tuple)) or len(outputs) != len(inputs):
            got = f"{len(outputs)} items" if isinstance(outputs, (list, tuple)) else type(outputs).__name__
            raise UsageError(f"model 'python': {self.target} returned {got} for {len(inputs)} inputs (expected a list of strings)")
        bad = [type(o).__name__ for o in outputs if not isinstance(o, str)]
        if bad:
            raise UsageError(f"model 'python': {self.target} returned a {bad[0]} where a string was expected")
        return list(outputs)

    def fingerprint(self) -> str:
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "fn": self.target, "args": self.args}
