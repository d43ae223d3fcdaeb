"""Which concept mentions are negated: NegEx/ConText-style triggers, scoped to their sentence.

Radiology reports state most findings by denying them ("No pneumothorax", "without focal
consolidation", "pleural effusion is not seen"), so a concept set that ignores negation rewards a
report for naming the right diseases in the wrong polarity. This module follows the design of NegEx
(Chapman et al., J Biomed Inform 2001) and ConText (Harkema et al., J Biomed Inform 2009):

* a *pre* trigger ("no", "without", "negative for") negates what follows it, up to the end of the
  sentence or a *termination* term ("but", "however", "there is"), so a list after one "no" is
  negated as a whole ("no focal consolidation, pleural effusion or pneumothorax");
* a *post* trigger ("is not seen", "ruled out", "has resolved") negates what precedes it, back to the
  sentence start or a termination term;
* *pseudo* triggers ("no change", "cannot be excluded", "not only") contain a trigger word but negate
  nothing, and are matched first so their words cannot act as triggers.

The trigger lists are radbench's own selection of the common English radiology phrasing, not a
copy of either lexicon. Sentences end at ``. ! ? ;`` followed by whitespace, and at line breaks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NEGATION_VERSION = "1"

PRE = (
    "no", "not", "without", "nor", "neither", "absence of", "negative for", "free of", "clear of",
    "no evidence of", "no evidence for", "no sign of", "no signs of", "no finding of", "no findings of",
    "no findings to suggest", "no radiographic evidence of", "without evidence of", "without signs of",
    "no longer", "resolution of", "rather than", "fails to reveal", "did not show", "does not show",
)
POST = (
    "absent", "is absent", "are absent", "is not seen", "are not seen", "not seen", "not identified", "not visualized",
    "not visualised", "not demonstrated", "not present", "not evident", "not appreciated", "not detected",
    "not noted", "not observed", "is ruled out", "was ruled out", "has been ruled out", "ruled out", "excluded",
    "has resolved", "have resolved", "resolved", "no longer seen", "no longer present", "no longer visualized",
    "no longer evident", "is gone", "has cleared",
)
PSEUDO = (
    "no change", "no interval change", "no significant change", "no significant interval change",
    "no increase", "no significant increase", "no decrease", "no significant decrease", "not changed",
    "without change", "without interval change", "not only", "not necessarily", "not certain if",
    "not certain whether", "cannot be excluded", "can not be excluded", "cannot be ruled out",
    "can not be ruled out", "not be excluded", "not be ruled out", "not excluded", "not ruled out",
    "not been excluded", "not been ruled out", "no further", "gram negative",
)
TERMINATE = (
    "but", "however", "although", "though", "yet", "except", "apart from", "aside from", "which", "whereas",
    "while", "still", "nevertheless", "there is", "there are", "there has been", "there have been",
)

_KIND = {**{t: "terminate" for t in TERMINATE}, **{t: "pre" for t in PRE}, **{t: "post" for t in POST},
         **{t: "pseudo" for t in PSEUDO}}
# Longest phrase first, so "no evidence of" wins over "no" and "not seen" (post) over "not" (pre).
_TRIGGERS = re.compile(
    r"(?<![a-z0-9])(" + "|".join(re.escape(t) for t in sorted(_KIND, key=len, reverse=True)) + r")(?![a-z0-9])"
)
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\n")


@dataclass(frozen=True)
class Scope:
    """A character range of the text whose mentions are negated, and the trigger that caused it."""

    start: int
    end: int
    trigger: str


def _sentences(text: str) -> list[tuple[int, int]]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if e > s]


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character ranges of the sentences negation stops at, for callers that scope other cues
    (laterality, diagnostic phrases) to the same sentences."""
    return _sentences(text)


def negation_scopes(text: str) -> list[Scope]:
    """Every negated character range of ``text`` (case-insensitive)."""
    lowered = text.lower()
    scopes: list[Scope] = []
    for s_start, s_end in _sentences(lowered):
        hits = [(m.start(), m.end(), _KIND[m.group(1)], m.group(1))
                for m in _TRIGGERS.finditer(lowered, s_start, s_end)]
        bounds = [s_start] + [h[1] for h in hits if h[2] == "terminate"] + [s_end]
        stops = sorted({h[0] for h in hits if h[2] == "terminate"} | {s_end})
        for start, end, kind, phrase in hits:
            if kind == "pre":
                scopes.append(Scope(end, next(s for s in stops if s >= end), phrase))
            elif kind == "post":
                scopes.append(Scope(max(b for b in bounds if b <= start), start, phrase))
    return scopes


def is_negated(start: int, end: int, scopes: list[Scope]) -> bool:
    """A mention is negated when it starts inside a negation scope."""
    return any(scope.start <= start < scope.end for scope in scopes)
