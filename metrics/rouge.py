"""ROUGE-1, ROUGE-2 and ROUGE-L F-measure with the Porter stemmer, averaged over samples.

This is RadEval's convention: ``rouge_score.RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=True)``, the F-measure of each pair, then the mean. With several references a sample
takes, per ROUGE type, its best reference by F-measure (rouge-score's ``score_multi``).

The values are rouge-score's, bit for bit (a test compares them), but computed faster:
tokenisation is rouge-score's rule as one regular expression, with nltk's Porter stemmer run once per
distinct word (a report vocabulary is small, stemming dominated the cost) and imported without the rest
of nltk, and the LCS length comes from the
bit-parallel algorithm of Allison & Dix (1986) / Hyyrö (2004) on Python integers instead of a
quadratic table. Per-pair values are cached on disk, and large inputs are split across cores.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from radbench.metrics import cache, options, parallel
from radbench.metrics.base import Metric, ScoreInput

ROUGE_IDS = ("rouge1", "rouge2", "rougeL")
PARALLEL_MIN_ITEMS = 20_000  # below this, worker start-up costs more than the work


def _porter_module() -> ModuleType:
    """``nltk.stem.porter``, imported without running ``nltk/__init__.py``.

    ``import nltk`` loads its whole toolkit (scipy.stats, sklearn, pandas: over a second) although
    rouge-score only needs the Porter stemmer, whose module depends on three small nltk modules. When
    nltk is not imported yet, empty package shells stand in for ``nltk`` and ``nltk.stem`` while
    that one module loads from nltk's own files, and are removed afterwards, so a later ``import
    nltk`` (QuickUMLS, a test) still runs nltk's real ``__init__``. The stemmer code is nltk's own,
    so its stems are nltk's (a test compares them with rouge-score on a large vocabulary).
    """
    if "nltk" in sys.modules:
        return importlib.import_module("nltk.stem.porter")
    spec = importlib.util.find_spec("nltk")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("nltk is not installed (rouge-score needs its Porter stemmer)")
    before = set(sys.modules)
    root = Path(next(iter(spec.submodule_search_locations)))
    for name, folder in (("nltk", root), ("nltk.stem", root / "stem")):
        shell = ModuleType(name)
        shell.__path__ = [str(folder)]  # a package with no __init__ code: its submodules import normally
        sys.modules[name] = shell
    try:
        return importlib.import_module("nltk.stem.porter")
    except ImportError:
        pass  # an nltk whose stemmer needs names from its package __init__: imported whole below
    finally:
        for name in set(sys.modules) - before:
            if name == "nltk" or name.startswith("nltk."):
                del sys.modules[name]
    return importlib.import_module("nltk.stem.porter")


class _Stems(dict):  # type: ignore[type-arg]
    """word -> rouge-score's token for it (nltk's Porter stem when longer than 3 characters).

    Filled on first sight of a word: a report vocabulary is small, so stemming runs once per word.
    ``None`` marks a stem that rouge-score's final validity check would drop.
    """

    stemmer: Any = None

    def __missing__(self, word: str) -> str | None:
        if len(word) > 3:
            if _Stems.stemmer is None:
                _Stems.stemmer = _porter_module().PorterStemmer()
            token = _Stems.stemmer.stem(word)
        else:
            token = word
        value = token if _VALID_TOKEN.match(token) else None
        self[word] = value
        return value


_STEMS = _Stems()
# rouge-score lowercases, turns every run of characters outside [a-z0-9] into one space and splits on
# whitespace: the tokens are exactly the maximal runs of [a-z0-9] in the lowercased text.
_WORD = re.compile(r"[a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")  # rouge_score.tokenize.VALID_TOKEN_RE, applied after stemming


@functools.lru_cache(maxsize=1 << 16)
def tokens(text: str) -> tuple[str, ...]:
    """rouge-score's tokenisation with stemming (lowercase, non-alphanumerics to spaces, stem > 3 chars).

    Equal to ``rouge_score.tokenize.tokenize(text, PorterStemmer())`` (tests check it on varied text).
    """
    stems = _STEMS
    out = [stems[w] for w in _WORD.findall(text.lower())]
    return tuple(t for t in out if t is not None)


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence, bit-parallel over ``a`` (Hyyrö 2004).

    Bit ``i`` of ``v`` stays 1 while position ``i`` of ``a`` is not yet used by the LCS; each token of
    ``b`` updates all positions at once with one addition. The LCS length is the number of 0 bits.
    """
    if not a or not b:
        return 0
    masks: dict[str, int] = {}
    for i, token in enumerate(a):
        masks[token] = masks.get(token, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for token in b:
        u = v & masks.get(token, 0)
        v = ((v + u) | (v - u)) & full
    return len(a) - v.bit_count()


def _fmeasure(precision: float, recall: float) -> float:
    # rouge_score.scoring.fmeasure, same arithmetic.
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ngram_f(target: Counter[tuple[str, ...]], prediction: Counter[tuple[str, ...]]) -> float:
    # rouge_score.rouge_scorer._score_ngrams: denominators clamped at 1.
    overlap = sum(min(count, prediction[gram]) for gram, count in target.items())
    precision = overlap / max(sum(prediction.values()), 1)
    recall = overlap / max(sum(target.values()), 1)
    return _fmeasure(precision, recall)


def _ngrams(toks: tuple[str, ...], n: int) -> Counter[tuple[str, ...]]:
    return Counter(zip(*(toks[i:] for i in range(n))))


def pair_scores(prediction: str, references: Sequence[str]) -> list[float]:
    """``[rouge1, rouge2, rougeL]`` F-measures against the best reference of each type."""
    pred = tokens(prediction)
    pred_grams = (_ngrams(pred, 1), _ngrams(pred, 2))
    best = [0.0, 0.0, 0.0]
    for i, reference in enumerate(references or [""]):
        ref = tokens(reference)
        lcs = lcs_length(ref, pred)
        rouge_l = _fmeasure(lcs / len(pred), lcs / len(ref)) if pred and ref else 0.0
        values = (_ngram_f(_ngrams(ref, 1), pred_grams[0]), _ngram_f(_ngrams(ref, 2), pred_grams[1]), rouge_l)
        best = list(values) if i == 0 else [max(b, v) for b, v in zip(best, values)]
    return best


def _score_chunk(pairs: list[tuple[str, tuple[str, ...]]]) -> list[list[float]]:
    return [pair_scores(p, r) for p, r in pairs]


class Rouge(Metric):
    group = "rouge"
    ids = ROUGE_IDS
    version = "1"

    SCHEMA = {"cache": options.parse_bool}

    def __init__(self, cache: bool | None = None) -> None:
        args = options.resolve(self.group, {"cache": cache}, self.SCHEMA)
        self._cache = args.get("cache", True)

    def config(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "implementation": f"rouge-score {importlib.metadata.version('rouge-score')} tokenizer and arithmetic",
            "use_stemmer": True,
            "measure": "fmeasure",
            "level": "mean of per-sample",
            "multi_reference": "max per type",
        }

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        store = cache.open_store(self.group, self.config(), self._cache)
        pairs = [(item.prediction, tuple(item.references)) for item in items]

        def compute(indices: list[int]) -> list[list[float]]:
            todo = [pairs[i] for i in indices]
            return parallel.chunked_map(_score_chunk, todo, min_items=PARALLEL_MIN_ITEMS)

        values = cache.cached_json(store, [[p, list(r)] for p, r in pairs], compute)
        return [dict(zip(self.ids, v)) for v in values]
