"""Which concept mentions are negated or uncertain: NegEx/ConText-style triggers, scoped to their sentence.

Radiology reports state most findings by denying them ("No pneumothorax", "without focal
consolidation", "pleural effusion is not seen"), so a concept set that ignores negation rewards a
report for naming the right diseases in the wrong polarity. This module follows the design of NegEx
(Chapman et al., J Biomed Inform 2001) and ConText (Harkema et al., J Biomed Inform 2009):

* a *pre* trigger ("no", "without", "negative for") negates what follows it, up to the end of the
  sentence or a *termination* term ("but", "however", "there is"), so a list after one "no" is
  negated as a whole ("no focal consolidation, pleural effusion or pneumothorax");
* a *post* trigger ("is not seen", "ruled out", "has resolved") negates what precedes it, back to the
  sentence start or a termination term;
* *pseudo* triggers ("no change", "not only", "to suggest") contain a trigger word but negate
  nothing, and are matched first so their words cannot act as triggers;
* "resolved" negates both ways ("resolved pneumothorax", "the effusion has resolved");
* *uncertainty* triggers work the same way: pre ("may represent", "possible", "likely", "concerning
  for"), post ("cannot be excluded", "is suspected", "may be present") and both ways ("versus",
  "and/or"). A mention inside several scopes takes the state of the nearest trigger, so in "no
  consolidation, possibly atelectasis" the atelectasis is uncertain and the consolidation negated.

The trigger lists are radbench's own selection of the common English radiology phrasing, not a
copy of either lexicon. Sentences end at ``. ! ? ;`` followed by whitespace, and at line breaks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

NEGATION_VERSION = "2"
ASSERTED, NEGATED, UNCERTAIN = "asserted", "negated", "uncertain"

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
    "no longer evident", "is gone", "has cleared", "are not identified", "is not identified", "have cleared",
    "has been removed", "not visible", "is not visible",
)
BOTH = ("resolved",)
UNCERTAIN_PRE = (
    "may represent", "may reflect", "may be", "might be", "might represent", "could represent", "could reflect",
    "could be", "can represent", "possible", "possibly", "probable", "probably", "likely", "likely represents",
    "most likely", "suspicious for", "suspected", "suspect", "concerning for", "worrisome for", "suggestive of",
    "suggesting", "suggests", "suggest", "questionable", "question of", "cannot exclude", "can not exclude",
    "can't exclude", "differential includes", "differential diagnosis includes", "equivocal", "presumed",
    "presumably", "rule out", "evaluate for", "borderline", "favored to represent", "may have",
    "can be seen with", "can be seen in", "could be seen with", "differential considerations include",
)
UNCERTAIN_POST = (
    "cannot be excluded", "can not be excluded", "can't be excluded", "cannot be ruled out", "can not be ruled out",
    "not excluded", "is not excluded", "not ruled out", "is not ruled out", "not been excluded",
    "not be excluded", "not be ruled out", "is possible", "are possible", "is suspected", "are suspected",
    "is questioned", "is likely", "are likely", "may be present", "could be present", "is not entirely excluded",
    "not entirely excluded", "is a possibility", "is favored", "is not certain",
)
UNCERTAIN_BOTH = ("versus", "vs", "and/or")
PSEUDO = (
    "no change", "no interval change", "no significant change", "no significant interval change",
    "no increase", "no significant increase", "no decrease", "no significant decrease", "not changed",
    "without change", "without interval change", "not only", "not necessarily", "not certain if",
    "not certain whether", "not been ruled out", "no further", "gram negative", "to suggest",
    "likely related to", "possibly related to", "may be related to", "no longer enlarged",
)
TERMINATE = (
    "but", "however", "although", "though", "yet", "except", "apart from", "aside from", "which", "whereas",
    "while", "still", "nevertheless", "there is", "there are", "there has been", "there have been",
    "persists", "persist", "remains", "remain", "with persistent", "and the", "and there",
)

_KIND = {**{t: "terminate" for t in TERMINATE}, **{t: "pre" for t in PRE}, **{t: "post" for t in POST},
         **{t: "both" for t in BOTH}, **{t: "unc_pre" for t in UNCERTAIN_PRE},
         **{t: "unc_post" for t in UNCERTAIN_POST}, **{t: "unc_both" for t in UNCERTAIN_BOTH},
         **{t: "pseudo" for t in PSEUDO}}
# Longest phrase first, so "no evidence of" wins over "no" and "not seen" (post) over "not" (pre).
_TRIGGERS = re.compile(
    r"(?<![a-z0-9])(" + "|".join(re.escape(t) for t in sorted(_KIND, key=len, reverse=True)) + r")(?![a-z0-9])"
)
_SENTENCE_END = re.compile(r"[.!?;](?=\s|$)|\n")


@dataclass(frozen=True)
class Scope:
    """A character range of the text whose mentions take ``state``, the trigger that caused it and
    where that trigger is (the nearest trigger decides between overlapping scopes)."""

    start: int
    end: int
    trigger: str
    state: str = NEGATED
    at: int = 0


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


def all_scopes(text: str) -> list[Scope]:
    """Every negated and every uncertain character range of ``text`` (case-insensitive)."""
    lowered = text.lower()
    scopes: list[Scope] = []
    for s_start, s_end in _sentences(lowered):
        hits = [(m.start(), m.end(), _KIND[m.group(1)], m.group(1))
                for m in _TRIGGERS.finditer(lowered, s_start, s_end)]
        bounds = [s_start] + [h[1] for h in hits if h[2] == "terminate"] + [s_end]
        stops = sorted({h[0] for h in hits if h[2] == "terminate"} | {s_end})
        for start, end, kind, phrase in hits:
            state = UNCERTAIN if kind.startswith("unc_") else NEGATED
            direction = kind.removeprefix("unc_")
            if direction in ("pre", "both"):
                scopes.append(Scope(end, next(s for s in stops if s >= end), phrase, state, start))
            if direction in ("post", "both"):
                scopes.append(Scope(max(b for b in bounds if b <= start), start, phrase, state, start))
    return scopes


def negation_scopes(text: str) -> list[Scope]:
    """Every negated character range of ``text`` (case-insensitive)."""
    return [scope for scope in all_scopes(text) if scope.state == NEGATED]


def is_negated(start: int, end: int, scopes: list[Scope]) -> bool:
    """A mention is negated when it starts inside a negation scope."""
    return any(scope.start <= start < scope.end for scope in scopes if scope.state == NEGATED)


def state(start: int, scopes: list[Scope]) -> str:
    """asserted, negated or uncertain: the state of the nearest trigger whose scope holds ``start``."""
    holding = [scope for scope in scopes if scope.start <= start < scope.end]
    if not holding:
        return ASSERTED
    return min(holding, key=lambda scope: (abs(start - scope.at), scope.state != NEGATED)).state
