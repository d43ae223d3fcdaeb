"""radbench on Python 3.12/3.13: nothing it imports needs a standard-library module those versions removed.

QuickUMLS's simstring extension imports ``imp`` (removed in 3.12), which is why the default UMLS
backend no longer uses it. These tests keep it that way: a static scan of radbench's own sources,
and a run of the default backend in a fresh interpreter that checks what got imported (on 3.11,
where ``imp`` still exists, this catches a dependency that would break on 3.12).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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
