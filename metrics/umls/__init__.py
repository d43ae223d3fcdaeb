"""UMLS concept precision/recall (RadFM's UMLS_Precision/UMLS_Recall), plain and negation-aware.

Per sample, with C(x) the set of UMLS CUIs found in text x:

* ``umls_precision`` = |C(pred) ∩ C(ref)| / |C(pred)|
* ``umls_recall``    = |C(pred) ∩ C(ref)| / |C(ref)|
* ``umls_f1``        = harmonic mean of the two (0 when both are 0)

macro-averaged over samples (the reported number is the mean of the per-sample values, and
``umls_f1`` is the mean of per-sample F1, not the F1 of the means). ``umls_neg_*`` are the same over
sets of (CUI, state) pairs, the state being asserted, negated or uncertain, so "No pneumothorax.",
"Possible pneumothorax." and "Pneumothorax." share the concept but not the pair.

Empty sets, one convention everywhere (point estimate and every bootstrap resample): when both
sets are empty the pair agrees perfectly, P = R = F1 = 1; when exactly one is empty, P = R = F1 = 0
(a prediction naming no concept where the reference names some, or naming concepts where the
reference names none, gets no credit). Every sample therefore has a defined value. With several
references a sample takes the reference with the best F1.

Concepts come from a backend (:mod:`.extractors`): by default radbench's phrase matcher over its
radiology lexicon and an HPO-derived index (HPO's UMLS CUIs, plus ``RADBENCH:`` ids for findings
HPO lacks), a user's QuickUMLS index of a licensed UMLS release, or RadFM's scispaCy pipeline. The
source is part of the metric's configuration (``source_label``, e.g. "HPO index"): numbers from
different sources measure different things and must not be compared. Extraction results are
cached on disk per text and backend configuration, so references are extracted once per task,
whatever the number of models; large batches are split across cores.

Arguments (``RADBENCH_METRIC_ARGS="umls.key=value,..."`` or constructor keywords): ``backend``
(hpo | quickumls | scispacy), ``index`` (QuickUMLS index directory), ``threshold``, ``similarity``,
``window``, ``min_match_length`` (QuickUMLS matching), ``model`` and ``mode`` (scispaCy: ``linker``
or RadFM's span-based ``entities``), ``cache``, ``workers``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

from radbench.metrics import cache, options, parallel
from radbench.metrics.base import Metric, ScoreInput
from radbench.metrics.umls import extractors

# Texts. The default matcher extracts ~8,000 reports/s in one process (benchmarks/bench_umls.py) and a
# worker needs a fraction of a second to start and load its dictionary, so only very large batches
# are split (QuickUMLS and scispaCy backends are slower and benefit sooner, but rarely see such batches).
PARALLEL_MIN_ITEMS = 20000

PLAIN_IDS = ("umls_precision", "umls_recall", "umls_f1")
NEG_IDS = ("umls_neg_precision", "umls_neg_recall", "umls_neg_f1")


def set_scores(pred: set[Any], ref: set[Any]) -> tuple[float, float, float]:
    """Precision, recall and F1 of two concept sets, with the documented empty-set convention."""
    if not pred and not ref:
        return 1.0, 1.0, 1.0
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    overlap = len(pred & ref)
    precision, recall = overlap / len(pred), overlap / len(ref)
    f1 = 2 * precision * recall / (precision + recall) if overlap else 0.0
    return precision, recall, f1


def _best(pred: set[Any], refs: Iterable[set[Any]]) -> tuple[tuple[float, float, float], int]:
    """Scores against the reference with the best F1 (the first on ties), and its position."""
    scored = [(set_scores(pred, ref), i) for i, ref in enumerate(refs)]
    return max(scored, key=lambda s: (s[0][2], -s[1]))


_STATE_SUFFIX = {"asserted": "", "negated": "(neg)", "uncertain": "(unc)"}


def _label(cui: str, state: str) -> str:
    return cui + _STATE_SUFFIX[state]


class Umls(Metric):
    group = "umls"
    ids = PLAIN_IDS + NEG_IDS
    version = "2"

    SCHEMA: ClassVar[dict[str, Callable[[str], Any]]] = {
        "backend": str, "index": str, "threshold": float, "similarity": str, "window": int,
        "min_match_length": int, "model": str, "mode": str, "cache": options.parse_bool, "workers": int,
    }

    def __init__(self, **kwargs: Any) -> None:
        args = options.resolve(self.group, kwargs, self.SCHEMA)
        tuning = {k: args[k] for k in ("threshold", "similarity", "window", "min_match_length", "model", "mode")
                  if k in args}
        self._spec = extractors.resolve_spec(args.get("backend", "hpo"), args.get("index"), **tuning)
        self._cache = bool(args.get("cache", True))
        self._workers = args.get("workers")
        self._bound: extractors.BackendSpec | None = None

    def spec(self) -> extractors.BackendSpec:
        """The backend, with the HPO index built (first use only) and bound to it."""
        if self._bound is None:
            self._bound = extractors.hpo_spec_with_index(self._spec) if self._spec.backend == "hpo" else self._spec
        return self._bound

    @property
    def source_label(self) -> str:
        """Where the concepts come from, for tables and pages: "UMLS P · HPO index"."""
        return self._spec.source_label

    def config(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "definition": "per sample P=|C(pred)∩C(ref)|/|C(pred)|, R=|C(pred)∩C(ref)|/|C(ref)|, F1 harmonic; "
            "macro mean over samples; neg variants over (CUI, state) pairs, state asserted/negated/uncertain",
            "empty_sets": "both empty: P=R=F1=1; exactly one empty: P=R=F1=0",
            "multi_reference": "best reference by F1",
            "negation": "NegEx/ConText-style negation and uncertainty triggers, sentence scope, nearest trigger "
            "wins (radbench.metrics.umls.negation)",
            **self.spec().identity(),
        }

    def extract(self, texts: Sequence[str]) -> list[list[extractors.Mention]]:
        """Concept mentions of each text, from the cache or the backend."""
        spec = self.spec()
        store = extractors.extraction_store(spec, self._cache)

        def compute(indices: list[int]) -> list[list[list[Any]]]:
            todo = [texts[i] for i in indices]
            return parallel.chunked_map(extractors.extract_chunk, todo, min_items=PARALLEL_MIN_ITEMS,
                                        workers=self._workers, spec=spec)

        raw = cache.cached_json(store, list(texts), compute)
        return [[extractors.Mention(*m) for m in found] for found in raw]

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        refs = [list(item.references) or [""] for item in items]
        texts = list(dict.fromkeys([*(item.prediction for item in items), *(r for group in refs for r in group)]))
        found = dict(zip(texts, self.extract(texts)))
        plain = {t: {m.cui for m in ms} for t, ms in found.items()}
        paired = {t: {(m.cui, m.state) for m in ms} for t, ms in found.items()}
        out = []
        for item, group in zip(items, refs):
            plain_scores, chosen = _best(plain[item.prediction], (plain[r] for r in group))
            neg_scores, _ = _best(paired[item.prediction], (paired[r] for r in group))
            out.append({
                **dict(zip(PLAIN_IDS, plain_scores)),
                **dict(zip(NEG_IDS, neg_scores)),
                "_umls": {
                    "pred": sorted({_label(c, n) for c, n in paired[item.prediction]}),
                    "ref": sorted({_label(c, n) for c, n in paired[group[chosen]]}),
                },
            })
        return out

