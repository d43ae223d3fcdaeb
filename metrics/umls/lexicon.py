"""The reviewed radiology surface-form layer (``radiology_lexicon.tsv``): report wording -> concept.

HPO names findings the way clinical genetics does ("Pleural effusion", "Cardiomegaly"); reports say
"effusions", "the heart is enlarged", "left lower lobe collapse", "airspace opacity". Each row of
the lexicon maps such wording to the concept a radiologist would agree on: the UMLS CUI that HPO
cross-references where HPO has the finding, otherwise a radbench-local id ``RADBENCH:<name>``
(consolidation, nodule, fracture, ... have no CUI in HPO, and radbench invents no CUIs). ``BLOCK``
rows name HPO strings whose words mean something else in report wording; the HPO index drops them.
Lexicon phrases win over identical HPO strings.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from radbench.errors import UsageError
from radbench.metrics.umls.matcher import phrase_key

LEXICON_PATH = Path(__file__).with_name("radiology_lexicon.tsv")
LOCAL_PREFIX = "RADBENCH:"


@dataclass(frozen=True)
class Concept:
    id: str
    name: str
    forms: tuple[str, ...]


@functools.lru_cache(maxsize=1)
def load() -> tuple[tuple[Concept, ...], tuple[str, ...]]:
    """The lexicon's concepts and its blocked HPO strings."""
    concepts: list[Concept] = []
    blocked: list[str] = []
    for number, line in enumerate(LEXICON_PATH.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 3:
            raise UsageError(f"{LEXICON_PATH}:{number}: expected 3 tab-separated columns, got {len(cols)}")
        if cols[0] == "BLOCK":
            blocked.append(cols[1])
            continue
        if not (cols[0].startswith(LOCAL_PREFIX) or (cols[0][:1] == "C" and cols[0][1:].isdigit())):
            raise UsageError(f"{LEXICON_PATH}:{number}: concept id {cols[0]!r} is neither a CUI nor RADBENCH:...")
        concepts.append(Concept(cols[0], cols[1], tuple(f.strip() for f in cols[2].split("|") if f.strip())))
    return tuple(concepts), tuple(blocked)


def entries() -> list[tuple[str, str]]:
    """``(surface form, concept id)`` of every lexicon phrase, in file order."""
    return [(form, concept.id) for concept in load()[0] for form in concept.forms]


def blocked_keys() -> frozenset[tuple[str, ...]]:
    return frozenset(phrase_key(s) for s in load()[1])


def names() -> dict[str, str]:
    """Concept id -> preferred name."""
    return {concept.id: concept.name for concept in load()[0]}
