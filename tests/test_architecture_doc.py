"""docs/architecture.md stays true to the code: every file it names exists, and the worked adapter
example uses only names that the modules it imports really have, with the hooks the base class calls."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def test_every_file_the_doc_names_exists() -> None:
    named = set(re.findall(r"`((?:radbench|models|tasks|metrics|leaderboard|tests)/[\w./]+\.(?:py|json))", DOC))
    named = {n for n in named if "NAME" not in n and "FAMILY" not in n and "FORMAT" not in n and "my_vlm" not in n}
    assert len(named) > 20
    missing = sorted(n for n in named if not (ROOT / n).exists() and not list(ROOT.glob(n)))
    assert not missing, missing


def _example() -> ast.Module:
    block = re.search(r"```python\n(# models/my_vlm\.py\n.*?)```", DOC, re.S)
    assert block, "the worked adapter example is missing"
    return ast.parse(block.group(1))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_worked_adapter_example_uses_real_names() -> None:
    pytest.importorskip("torch")
    tree = _example()
    modules: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("radbench"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                target = getattr(module, alias.name, None)
                if target is None:  # a submodule imported by name
                    target = importlib.import_module(f"{node.module}.{alias.name}")
                modules[alias.asname or alias.name] = target
    used = {(n.value.id, n.attr) for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id in modules}
    missing = sorted(f"{a}.{b}" for a, b in used if not hasattr(modules[a], b))
    assert not missing, missing
    base = modules["CheckpointAdapter"]
    adapter = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "MyVLMAdapter")
    hooks = [f.name for f in adapter.body if isinstance(f, ast.FunctionDef)]
    assert set(hooks) == {"build_tiny", "load_released", "split_points", "decoding_facts", "generate"}
    assert all(hasattr(base, h) for h in hooks + ["tiny_identity", "weights_identity", "from_args"])


def test_the_example_registers_with_one_line() -> None:
    line = re.search(r'"my-vlm": "radbench\.models\.my_vlm:MyVLMAdapter"', DOC)
    assert line, "the registry line of the worked example"
    from radbench import registry

    assert all(":" in target for target in registry.BUILTIN["models"].values())  # the same form
