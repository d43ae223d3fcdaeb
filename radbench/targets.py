"""``package.module:attribute`` strings to objects, with one-line errors.

The registry's lazy entries and the ``python`` adapter's ``fn=`` both name code this way; it sits at
the bottom of the layers so that an adapter can load user code without importing the registry.
"""

from __future__ import annotations

import importlib
from typing import Any

from radbench.errors import UsageError


def load_target(target: str, what: str) -> Any:
    module_name, _, attr = target.partition(":")
    if not attr:
        raise UsageError(f"{what}: expected 'package.module:attribute', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(f"{what}: cannot import module {module_name!r}") from exc
        raise UsageError(
            f"{what}: module {module_name!r} needs the package {exc.name!r}, which is not installed"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError as exc:
        raise UsageError(f"{what}: module {module_name!r} has no attribute {attr!r}") from exc
