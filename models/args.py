"""``--model-args`` of the released-checkpoint adapters, parsed once into a typed value.

Each adapter declares its accepted keys as a frozen dataclass (:class:`CheckpointArgs` or a
subclass): the field names are the keys, their annotations say how the text converts (``str``,
``int``, ``float``, ``bool``, each optionally ``| None``), and ``metadata={"minimum": n}`` bounds a
number. :meth:`CheckpointArgs.parse` refuses unknown keys and bad values in one line each; the
adapter then reads attributes, never the raw mapping, and nothing is re-serialised (so a value
holding commas, ``gpus=0,1``, stays whole).
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Self, Sequence

from radbench import options
from radbench.errors import UsageError
from radbench.models.hub_args import hub_path

def check_model_args(model: str, model_args: Mapping[str, str], allowed: Sequence[str]) -> None:
    """Refuse an unknown ``--model-args`` key in one line: a typo must not silently use a default."""
    unknown = sorted(set(model_args) - set(allowed))
    if unknown:
        raise UsageError(
            f"model {model!r}: unknown --model-args {', '.join(unknown)} (accepted: {', '.join(sorted(allowed))})"
        )


def parse_int(model: str, key: str, text: str | None, default: int, minimum: int = 1) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise UsageError(f"model {model!r}: {key}={text!r} is not an integer") from exc
    if value < minimum:
        raise UsageError(f"model {model!r}: {key}={value} must be >= {minimum}")
    return value


def require_file(model: str, key: str, path_text: str | None, expected: str, hint: str = "") -> Path:
    """The file (or folder) that ``--model-args key=PATH`` names, or a one-line error naming what was expected."""
    hint = f" ({hint})" if hint else ""
    if not path_text:
        raise UsageError(f"model {model!r} needs --model-args {key}=PATH: {expected}{hint}")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise UsageError(f"model {model!r}: {key}={path} does not exist (expected {expected}){hint}")
    return path


def find_in(model: str, key: str, folder: Path, names: Sequence[str], expected: str) -> Path:
    """The first of ``names`` inside ``folder`` (or ``folder`` itself when it is one of them)."""
    if folder.is_file():
        if folder.name in names or not names:
            return folder
        raise UsageError(f"model {model!r}: {key}={folder} is not {expected}")
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise UsageError(f"model {model!r}: {key}={folder} lacks {' or '.join(names)} (expected {expected})")



def _convert(model: str, key: str, text: str, kind: Any, minimum: float | None) -> Any:
    """One value from its text, as the field's annotation says (``X | None`` converts as ``X``)."""
    if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool:
        try:
            return options.parse_bool(text)
        except ValueError:
            raise UsageError(f"model {model!r}: {key}={text!r} is not a boolean (use 1 or 0)") from None
    if kind is int:
        return parse_int(model, key, text, 0, minimum=int(minimum if minimum is not None else -(2**63)))
    if kind is float:
        try:
            value = float(text)
        except ValueError:
            raise UsageError(f"model {model!r}: {key}={text!r} is not a number") from None
        if minimum is not None and value < minimum:
            raise UsageError(f"model {model!r}: {key}={value} must be >= {minimum}")
        return value
    return text


@dataclass(frozen=True)
class ModelArgs:
    """Base of every adapter's typed ``--model-args``: subclasses declare the keys as fields."""

    @classmethod
    def parse(cls, model: str, raw: Mapping[str, str]) -> Self:
        """The typed value of ``raw``; an unknown key or a bad value is a one-line :class:`UsageError`.

        An empty value (``lm_path=``) means the key's default, as leaving the key out does.
        """
        check_model_args(model, raw, [f.name for f in fields(cls)])
        hints = typing.get_type_hints(cls)
        values = {
            f.name: _convert(model, f.name, raw[f.name], hints[f.name], f.metadata.get("minimum"))
            for f in fields(cls)
            if raw.get(f.name, "") != ""
        }
        parsed = cls(**values)
        parsed.check(model)
        return parsed

    def check(self, model: str) -> None:
        """Checks that need more than one field or a closed set of values; subclasses extend it."""


RADBENCH = "radbench"
AUTHORS = "authors"
PROTOCOLS = (RADBENCH, AUTHORS)


@dataclass(frozen=True)
class CheckpointArgs(ModelArgs):
    """The keys every released-checkpoint adapter accepts; an adapter subclasses this for its own.

    ``checkpoint``: the weights, a local path or a Hub repo ``ORG/NAME[@REV]`` (:mod:`radbench.models.hub_args`;
    an adapter overrides the field with its released repo as default and the files it reads); ``dtype``: fp32, bf16 or fp16; ``device``, or ``device_map=auto``
    with ``gpus=0,1`` for one replica split over GPUs; ``preset=tiny-random`` (with ``seed``) builds
    the architecture at toy sizes without weights; ``full_fingerprint=1`` hashes every weight byte.
    """

    checkpoint: str | None = hub_path()
    dtype: str = "fp32"
    device: str | None = None
    device_map: str | None = None
    gpus: str | None = None
    preset: str | None = None
    seed: int | None = field(default=None, metadata={"minimum": 0})
    batch_size: int = field(default=4, metadata={"minimum": 1})
    full_fingerprint: bool = False
    protocol: str = RADBENCH

    def check(self, model: str) -> None:
        if self.protocol not in PROTOCOLS:
            raise UsageError(f"model {model!r}: protocol={self.protocol!r}; use {' or '.join(PROTOCOLS)}")

    def placement(self) -> dict[str, str]:
        """The keys :func:`radbench.models.placement.parse_devices` reads, as given."""
        given = {"device": self.device, "device_map": self.device_map, "gpus": self.gpus}
        return {key: value for key, value in given.items() if value is not None}
