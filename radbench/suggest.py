"""Did you mean ...": the closest known names to a mistyped one, for one-line usage errors.

A typo (``--model majorty``, ``--metrics bleu_1``) should cost one glance, not a read through the
list of every registered name. :mod:`difflib` ranks by similarity ratio, which catches dropped,
swapped and doubled letters without tuning.
"""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, known: Iterable[str], limit: int = 3) -> str:
    """``"; did you mean 'majority'?"`` for the closest known names, or ``""`` when none is close."""
    candidates = list(known)
    matches = difflib.get_close_matches(name, candidates, n=limit, cutoff=0.6)
    if not matches:
        # Case slips (``BLEU1``, ``VQA``) score low on the raw ratio; compare lower-cased too.
        lowered = {k.lower(): k for k in candidates}
        matches = [lowered[m] for m in difflib.get_close_matches(name.lower(), list(lowered), n=limit, cutoff=0.6)]
    if not matches:
        return ""
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?"
