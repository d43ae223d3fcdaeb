"""The JSON Schemas (draft 2020-12) of every file radbench writes, shipped inside the package.

``results`` and ``leaderboard`` are the published formats; ``scores`` and ``predictions`` describe
one JSONL line each; ``compare`` and ``sweep`` are the machine-readable reports of those commands.
Writers validate before writing, so a file that exists on disk is one that readers can trust.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

NAMES = ("results", "scores", "predictions", "leaderboard", "compare", "sweep")


@lru_cache(maxsize=None)
def load(name: str) -> dict[str, Any]:
    if name not in NAMES:
        raise KeyError(f"no schema {name!r}; radbench has {', '.join(NAMES)}")
    text = resources.files("radbench.schemas").joinpath(f"{name}.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def validate(obj: Any, name: str) -> None:
    """Raise ``jsonschema.ValidationError`` if ``obj`` does not match schema ``name`` (a radbench bug)."""
    import jsonschema

    jsonschema.validate(obj, load(name), cls=jsonschema.Draft202012Validator)
