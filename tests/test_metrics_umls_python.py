"""radbench on Python 3.12/3.13: nothing it imports needs a standard-library module those versions removed.

QuickUMLS's simstring extension imports ``imp`` (removed in 3.12), which is why the default UMLS
backend no longer uses it. These tests keep it that way: a static scan of radbench's own sources,
and a run of the default backend in a fresh interpreter that checks what got imported (on 3.11,
where ``imp`` still exists, this catches a dependency that would break on 3.12). Two slow tests
cover the third-party side: every package radbench imports is imported in a fresh interpreter, and
the sources of every distribution setup.cfg pulls in at run time (install_requires and the
runtime extras, followed through their own requirements) are scanned for an import that nothing
guards.
"""

from __future__ import annotations

import ast
import configparser
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("radbench", "metrics", "models", "tasks", "leaderboard")
# PEP 594 (removed in 3.13), distutils (PEP 632) and imp/asynchat/asyncore/smtpd (removed in 3.12).
REMOVED = frozenset({
    "imp", "distutils", "asynchat", "asyncore", "smtpd", "aifc", "audioop", "cgi", "cgitb", "chunk", "crypt",
    "imghdr", "mailcap", "msilib", "nis", "nntplib", "ossaudiodev", "pipes", "sndhdr", "spwd", "sunau",
    "telnetlib", "uu", "xdrlib", "lib2to3",
})


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_radbench_source_imports_a_removed_stdlib_module() -> None:
    offenders = {str(p.relative_to(ROOT)): sorted(imported_modules(p) & REMOVED)
                 for src in SOURCES for p in (ROOT / src).rglob("*.py")}
    assert {p: m for p, m in offenders.items() if m} == {}


def test_default_umls_backend_imports_no_removed_module_and_no_quickumls(tmp_path: Path) -> None:
    script = (
        "import json, sys\n"
        "from radbench.metrics.umls import Umls\n"
        "found = Umls(cache=False).extract(['No pneumothorax. Small left effusion.'])[0]\n"
        "print(json.dumps({'found': [[m.cui, m.state] for m in found], 'modules': sorted(sys.modules)}))\n"
    )
    env = {"RADBENCH_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300, check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["found"] == [["C0032326", "negated"], ["C0032227", "asserted"]]
    top = {name.split(".")[0] for name in result["modules"]}
    assert not top & (REMOVED | {"quickumls", "quickumls_simstring", "spacy", "torch"})


# The extras a user's run imports from. `quickumls` is declared for Python < 3.12 only (its simstring
# imports `imp`); `test` is not imported at run time (the suite itself runs on each interpreter).
RUNTIME_EXTRAS = ("models", "metrics", "data", "api")
# Optional packages radbench imports only for umls.backend=quickumls / umls.mode=entities.
OPTIONAL_UMLS = frozenset({"quickumls", "scispacy", "spacy"})
IMPORT_LINE = re.compile(
    rb"^[ \t]*(?:import|from)[ \t][^\n]*\b(?:%s)\b" % b"|".join(n.encode() for n in sorted(REMOVED)), re.M)


def third_party_imports() -> set[str]:
    """Top-level modules radbench's sources import that are neither the standard library nor radbench."""
    names = set().union(*(imported_modules(p) for src in SOURCES for p in (ROOT / src).rglob("*.py")))
    return {n for n in names if n not in sys.stdlib_module_names and n != "radbench"}


def runtime_requirements() -> list[Requirement]:
    """install_requires and the runtime extras, read from setup.cfg (the installed metadata may be stale)."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = cfg["options"]["install_requires"].splitlines()
    for extra in RUNTIME_EXTRAS:
        lines += cfg["options.extras_require"][extra].splitlines()
    return [Requirement(line) for line in (raw.strip() for raw in lines) if line and not line.startswith("#")]


def runtime_distributions() -> dict[str, metadata.Distribution]:
    """The installed distributions those requirements reach, following each one's own requirements."""
    found: dict[str, metadata.Distribution] = {}
    done: set[tuple[str, frozenset[str]]] = set()
    todo = runtime_requirements()
    while todo:
        req = todo.pop()
        key = (canonicalize_name(req.name), frozenset(req.extras))
        if key in done or (req.marker is not None and not req.marker.evaluate({"extra": ""})):
            continue
        done.add(key)
        try:
            dist = found.get(key[0]) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue
        found[key[0]] = dist
        for text in dist.requires or ():
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in ("", *req.extras)):
                sub.marker = None
                todo.append(sub)
    return found


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    guards = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    return handler.type is None or any(getattr(t, "id", getattr(t, "attr", None)) in guards for t in types)


def unguarded_removed_imports(tree: ast.AST) -> list[tuple[int, str]]:
    """Imports of removed modules that would raise on 3.12/3.13.

    Guarded (not reported): inside a ``try`` that catches ImportError (or broader), inside that
    ``try``'s handlers when its body imports an alternative (``try: from html import escape /
    except ImportError: from cgi import escape``), and under an ``if`` on ``sys.version_info``.
    """
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, guarded: bool) -> None:
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not guarded:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if node.module and not node.level else [])
            found.extend((node.lineno, n) for n in names if n.split(".")[0] in REMOVED)
        if isinstance(node, ast.Try):
            catches = any(_catches_import_error(h) for h in node.handlers)
            fallback = catches and any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in node.body)
            for child in node.body:
                visit(child, guarded or catches)
            for child in node.handlers:
                visit(child, guarded or fallback)
            for child in node.orelse + node.finalbody:
                visit(child, guarded)
            return
        if isinstance(node, ast.If) and "version_info" in ast.unparse(node.test):
            for child in node.body + node.orelse:
                visit(child, True)
            return
        for child in ast.iter_child_nodes(node):
            visit(child, guarded)

    visit(tree, False)
    return found


def test_the_guard_rules_report_only_imports_that_would_raise() -> None:
    source = (
        "import imp\n"
        "import os, telnetlib\n"
        "try:\n    import asyncore\nexcept ImportError:\n    asyncore = None\n"
        "try:\n    from html import escape\nexcept ImportError:\n    from cgi import escape\n"
        "try:\n    x = 1\nexcept ValueError:\n    import uu\n"
        "if sys.version_info < (3, 12):\n    import distutils\n"
        "def f():\n    from distutils.util import strtobool\n"
        "from .imp import thing\n"
    )
    assert unguarded_removed_imports(ast.parse(source)) == [
        (1, "imp"), (2, "telnetlib"), (14, "uu"), (18, "distutils.util")]


def _skipped(dist_name: str, relative: Path) -> bool:
    """Files a run never imports: test suites, setuptools (on 3.12+ it supplies `distutils` itself,
    from setuptools/_distutils; torch imports it only to compile extensions) and numpy.distutils
    (a build tool numpy ships for Python < 3.12 only)."""
    parts = relative.parts
    return ("tests" in parts or "test" in parts or dist_name == "setuptools"
            or (dist_name == "numpy" and parts[:2] == ("numpy", "distutils")))


@pytest.mark.slow
def test_no_runtime_dependency_imports_a_removed_module_unguarded() -> None:
    dists = runtime_distributions()
    declared = {canonicalize_name(r.name) for r in runtime_requirements()
                if r.marker is None or r.marker.evaluate({"extra": ""})}
    assert {"numpy", "torch", "transformers", "pyhpo"} <= set(dists), "the scan would see too little"
    assert declared <= set(dists) | {"torch"}, f"not installed: {sorted(declared - set(dists))}"
    offenders: dict[str, list[tuple[int, str]]] = {}
    for name, dist in sorted(dists.items()):
        for relative in dist.files or ():
            if relative.suffix != ".py" or _skipped(name, Path(relative)):
                continue
            data = Path(dist.locate_file(relative)).read_bytes()
            if IMPORT_LINE.search(data) and (bad := unguarded_removed_imports(ast.parse(data))):
                offenders[f"{name}: {relative}"] = bad
    assert offenders == {}


@pytest.mark.slow
def test_importing_every_third_party_module_radbench_uses_loads_no_removed_module() -> None:
    modules = sorted(third_party_imports() - OPTIONAL_UMLS)
    assert {"numpy", "torch", "transformers", "tokenizers", "httpx"} <= set(modules)
    script = (
        "import importlib, importlib.util, json, sys\n"
        f"names = {modules!r}\n"
        "present = [n for n in names if importlib.util.find_spec(n) is not None]\n"
        "for n in present:\n    importlib.import_module(n)\n"
        "print(json.dumps({'present': present, 'modules': sorted(sys.modules)}))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300, check=True)
    result = json.loads(out.stdout.splitlines()[-1])
    assert {"numpy", "transformers"} <= set(result["present"])
    assert not {name.split(".")[0] for name in result["modules"]} & REMOVED
