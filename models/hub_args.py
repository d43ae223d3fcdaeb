"""Path-or-repo ``--model-args``: a key that takes a local path also takes a Hub repo ``ORG/NAME[@REV]``.

An adapter declares such a key with :func:`hub_path` (its default may be the released repo, and it
names the files the adapter reads from a repo: ``allow_patterns``). :func:`resolve_hub_paths`, called
once by the checkpoint template before the weights load, turns every such value that is a repo id
into the local folder of its snapshot in huggingface_hub's cache (through :func:`radbench.hub.resolve`:
archives unpacked once, offline means cache only), so adapters keep reading plain paths. An existing
local path always wins and is left untouched; a value that is neither is left for the adapter's own
one-line "does not exist" check.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from radbench import hub
from radbench.errors import UsageError

A = TypeVar("A")


@dataclass(frozen=True)
class HubFiles:
    """What a path-or-repo key reads from a repo.

    ``patterns``: the files to fetch (``None``: all of them). ``locate``: file names that mark the
    folder the adapter wants; the key then names the shallowest folder holding one of them (a repo
    that nests its weights, or an archive that unpacks into a sub-folder), else the repo's root.
    """

    patterns: tuple[str, ...] | None = None
    locate: tuple[str, ...] = ()


def hub_path(default: str | None = None, *, patterns: tuple[str, ...] | None = None,
             locate: tuple[str, ...] = ()) -> Any:
    """A dataclass field for a key that takes a local path or ``ORG/NAME[@REV]`` (``default``: a repo id)."""
    return field(default=default, metadata={"hub": HubFiles(patterns, locate)})


def hub_fields(args: Any) -> dict[str, HubFiles]:
    """The path-or-repo keys of a typed args value, with what each reads."""
    return {f.name: f.metadata["hub"] for f in fields(args) if "hub" in f.metadata}


def resolve_hub_paths(model: str, args: A) -> tuple[A, dict[str, dict[str, Any]]]:
    """``args`` with every repo id replaced by its local folder, and each repo's provenance by key."""
    updates: dict[str, str] = {}
    origins: dict[str, dict[str, Any]] = {}
    keys = hub_fields(args)
    for key in keys:  # a mistyped local path is named before any default repo is looked up
        value = getattr(args, key)
        if value and hub.parse_repo_id(value) is None and not Path(value).expanduser().exists():
            raise UsageError(f"model {model!r}: {key}={Path(value).expanduser()} does not exist")
    for key, spec in keys.items():
        value = getattr(args, key)
        if not value or Path(value).expanduser().exists() or hub.parse_repo_id(value) is None:
            continue
        resolved = hub.resolve(value, repo_type="model", allow_patterns=spec.patterns,
                               what=f"model {model!r}: --model-args {key}={value}")
        updates[key] = str(_locate(model, key, value, resolved, spec.locate))
        origins[key] = resolved.provenance()
    return (replace(args, **updates) if updates else args), origins  # type: ignore[type-var]


def _locate(model: str, key: str, value: str, resolved: hub.Resolved, names: tuple[str, ...]) -> Path:
    """The shallowest folder under the resolved repo holding one of ``names`` (the root without names)."""
    root = resolved.path
    if not names:
        return root
    for depth in range(6):
        found = sorted(p for p in _at_depth(root, depth) if p.name in names)
        if found:
            return found[0].parent
    raise UsageError(f"model {model!r}: --model-args {key}={value}: the Hugging Face repo (commit {resolved.commit}) "
                     f"holds no {' or '.join(names)} (resolved to {root})")


def _at_depth(root: Path, depth: int) -> list[Path]:
    """Files exactly ``depth`` folders below ``root``, hidden folders (unpacking in progress) skipped."""
    level = [root]
    for _ in range(depth):
        level = [c for d in level for c in _children(d) if c.is_dir() and not c.name.startswith(".")]
    return [c for d in level for c in _children(d) if c.is_file()]


def _children(folder: Path) -> list[Path]:
    try:
        return [folder / name for name in os.listdir(folder)]
    except OSError:
        return []
