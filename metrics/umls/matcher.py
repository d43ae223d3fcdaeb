"""radbench's concept matcher: whole normalised phrases from a dictionary, leftmost-longest.

The default backend used to run QuickUMLS (character-trigram similarity >= 0.7 over the HPO index).
Fuzzy matching is what turned report wording into unrelated concepts: "perihilar fullness" reached
*lethargy* through "dullness", a catheter tip "in the descending thoracic aorta" reached an aortic
aneurysm, "aortic calcifications" reached dental pulp calcification. A finding's name keeps its head
noun and its anatomy, so this matcher accepts only a dictionary phrase whose every word is present,
in order. What fuzzy matching bought (plurals, British spelling, hyphenation, a degree word in the
middle of a phrase) is recovered by normalisation instead:

* lowercase; words are runs of letters and digits, so "ground-glass" is "ground glass";
* British spellings folded ("haemorrhage", "oedema", "tumour");
* plurals singularised by rule, with the irregular plurals radiology uses ("pneumothoraces",
  "emboli", "metastases", "bullae");
* inside a phrase, degree, size and side words may intervene ("heart is *mildly* enlarged" matches
  "heart is enlarged"), and an intervening "not" negates the match ("heart is *not* enlarged").

It is pure Python with no compiled dependency (QuickUMLS's simstring extension imports ``imp``,
removed in Python 3.12), and it is fast: a dictionary lookup per word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

MATCHER_VERSION = "1"
WORD = re.compile(r"[a-z0-9]+")

IRREGULAR = {
    "pneumothoraces": "pneumothorax", "hemithoraces": "hemithorax", "thoraces": "thorax", "emboli": "embolus",
    "bullae": "bulla", "diverticula": "diverticulum", "metastases": "metastasis", "calculi": "calculus",
    "lacunae": "lacuna", "vertebrae": "vertebra", "apices": "apex", "cortices": "cortex", "foramina": "foramen",
    "bronchi": "bronchus", "nuclei": "nucleus", "tumours": "tumor", "tumour": "tumor", "menisci": "meniscus",
    "diagnoses": "diagnosis", "stenoses": "stenosis", "ectases": "ectasis", "fistulae": "fistula",
    "sulci": "sulcus", "gyri": "gyrus", "fungi": "fungus", "pancreas": "pancreas", "atlas": "atlas",
    "whereas": "whereas", "aorticopulmonary": "aorticopulmonary",
}
# Word endings a plural "s" cannot be stripped from (abscess, embolus, stenosis are singular).
_KEEP_S = ("ss", "us", "is")

# Degree, size, extent and side words that may sit inside a finding phrase without changing it.
INFIX = frozenset("""
    mild mildly moderate moderately severe severely marked markedly slight slightly minimal minimally
    significant significantly small large tiny trace new again still now also somewhat increasingly
    stably persistently chronically
    pathologically left right bilateral bilaterally partially partial diffusely diffuse
""".split())
NEGATING_INFIX = frozenset({"not"})


def fold(word: str) -> str:
    """One word's normal form: British spelling folded, plural singularised."""
    if word in IRREGULAR:
        return IRREGULAR[word]
    word = word.replace("ae", "e").replace("oe", "e")
    if word in IRREGULAR:
        return IRREGULAR[word]
    if len(word) <= 3 or word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes", "zes")):
        return word[:-2]
    if word.endswith(_KEEP_S):
        return word
    if word.endswith("s"):
        return word[:-1]
    return word


def tokens(text: str) -> list[tuple[str, int, int]]:
    """``(normal form, start, end)`` of each word of ``text``."""
    return [(fold(m.group()), m.start(), m.end()) for m in WORD.finditer(text.lower())]


def phrase_key(phrase: str) -> tuple[str, ...]:
    return tuple(t for t, _, _ in tokens(phrase))


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    concept: str
    negated_inside: bool


_END = ""  # trie key of a phrase's concept (no word is empty)


class PhraseMatcher:
    """A word trie over normalised phrases; earlier entries for a phrase win over later ones."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self.trie: dict[str, dict] = {}
        self.size = 0
        for phrase, concept in entries:
            key = phrase_key(phrase)
            if not key:
                continue
            node = self.trie
            for word in key:
                node = node.setdefault(word, {})
            if _END not in node:
                node[_END] = concept
                self.size += 1

    def find(self, text: str) -> list[Match]:
        """Leftmost-longest, non-overlapping phrase matches of ``text``."""
        words = tokens(text)
        out: list[Match] = []
        i = 0
        while i < len(words):
            node = self.trie.get(words[i][0])
            best: tuple[int, str, bool] | None = None
            negated = False
            j = i  # the last word that moved down the trie
            k = i  # the word being looked at
            while node is not None:
                if _END in node and k == j:
                    best = (j, node[_END], negated)
                k += 1
                if k >= len(words):
                    break
                word = words[k][0]
                if word in node:
                    node, j = node[word], k
                elif word in INFIX:
                    continue
                elif word in NEGATING_INFIX:
                    negated = True
                else:
                    break
            if best is None:
                i += 1
                continue
            last, concept, neg = best
            out.append(Match(words[i][1], words[last][2], concept, neg))
            i = last + 1
        return out
