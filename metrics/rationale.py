"""Rationale diagnosis scored the way a radiologist reads it.

RadFM's rationale reference is the disease's article text, the sentence "The Radiographic features
can be summarized as follows.", then the case's radiographic features.
BLEU and ROUGE over that whole text reward reproducing the article and barely notice a wrong
diagnosis, a missed feature, a swapped side or a dropped "no". A radiologist reading a rationale
asks those questions instead, and so does group ``rationale``:

``diagnosis_hit`` / ``diagnosis_hit_any``
    Whether the first diagnosis the generation states (or any it states) is the case title. The
    stated diagnoses are the generation's non-negated concept mentions and occurrences of the
    title, in text order, except that those after a conclusion phrase ("consistent with",
    "diagnosis:", "most likely" ...) come first, so "hyperdense lesion with cerebral oedema,
    consistent with intracranial haemorrhage" states the haemorrhage first. One matches the title
    by its words (Porter stems, British spellings folded: haemorrhage = hemorrhage) or by sharing
    a UMLS CUI with it ("bleeding within the skull" is C0151699, intracranial haemorrhage).
``feature_recall``
    The share of gold features the generation states with the gold polarity and, where both give a
    side, the gold side. A feature is read as its concepts (CUIs) when the extractor finds any,
    else as its key terms (content-word stems and numbers, counts as digits), because the default
    HPO vocabulary has no CUI for most radiographic descriptions ("round soft-tissue nodule"):
    key terms are stated when one sentence holds all their numbers and at least ``term_overlap``
    of their words. Features are looked for after the generation's separator when it has one: its
    article part describes the disease in general, and copying it recalls no feature of the case.
``feature_precision``
    The share of the generation's concepts (CUI, polarity, side) that the title, a gold feature or
    the article supports: same CUI and polarity, and one of the gold sides where those give one.
``laterality_error_rate`` / ``negation_error_rate``
    Among the gold findings the generation mentions at all (same CUI, or key terms found, in any
    polarity), the share whose side disagrees (both state one of left, right, bilateral) and the
    share whose polarity disagrees ("no pleural effusion" vs "pleural effusion").

Undefined values are ``None`` and every aggregate (point estimate and each bootstrap resample)
skips them: no title -> no diagnosis metrics; no judgeable gold feature -> no recall; no concept in
the generation -> no precision; no matched finding (or none localised on both sides) -> no error
rate. A generation that states no diagnosis scores 0 on both diagnosis metrics. Aggregates are
means of per-sample values (macro), so ``compare`` pairs them sample by sample.

Group ``rationale_text`` reports BLEU and ROUGE per part (``rationale_article_rougeL``,
``rationale_features_bleu4`` ...): the reference is split at the separator, and so is the
generation when it has one (else the whole generation is compared with each part). A reference
without the separator falls back to whole-text scoring, is flagged ``_rationale_split: fallback``,
counted in ``rationale_split_fallback_rate`` and named in a warning.

Concepts come from the ``umls`` metric's backend and cache (``umls.backend`` etc. apply here too);
negation from :mod:`radbench.metrics.umls.negation`. Uncertainty ("may represent") is not modelled.
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from radbench.errors import UsageError
from radbench.metrics import options
from radbench.metrics.base import Metric, ScoreInput
from radbench.metrics.bleu import MAX_N, Bleu, bleu_from_sums
from radbench.metrics.rouge import ROUGE_IDS, Rouge
from radbench.metrics.umls import Umls, negation
from radbench.metrics.umls.extractors import Mention
from radbench.metrics.umls.stopwords import ENGLISH
from radbench.types import RATIONALE_SEPARATOR

CONCEPT_IDS = ("diagnosis_hit", "diagnosis_hit_any", "feature_recall", "feature_precision",
               "laterality_error_rate", "negation_error_rate")
PARTS = ("article", "features")
BLEU_IDS = tuple(f"bleu{n}" for n in range(1, MAX_N + 1))
PART_IDS = {f"rationale_{part}_{m}": (part, m) for part in PARTS for m in (*BLEU_IDS, *ROUGE_IDS)}
FALLBACK_ID = "rationale_split_fallback_rate"

# Tolerant of case and spacing: generations copy the sentence less exactly than references do.
_SEPARATOR = re.compile(r"\s*" + r"\s+".join(map(re.escape, RATIONALE_SEPARATOR.split())) + r"\s*", re.IGNORECASE)
_FEATURE_BREAK = re.compile(r"(?<=[.!?;])\s+")
_TOKEN = re.compile(r"[a-z0-9]+")
_SIDE = re.compile(r"(?<![a-z])(bilateral(?:ly)?|both sides|both lungs|both hemispheres|left and right|right and left"
                   r"|left|right)(?![a-z])")
# Conclusion phrases only: encyclopedic text (what RadFM reproduces) says "typical of" or "the
# differential diagnosis includes" about other diseases, and those must not come first.
_CUE = re.compile(r"(?<![a-z])(?<!differential )(consistent with|in keeping with|compatible with|diagnostic of|"
                  r"diagnosis is|diagnosis:|impression is|impression:|most likely|likely represents)(?![a-z])")
_NUMBERS = {w: str(i) for i, w in enumerate("zero one two three four five six seven eight nine ten".split())}
# Words that say where or whether, not what: they never make two findings the same finding.
_NOT_KEY = ENGLISH | {"left", "right", "bilateral", "bilaterally", "side", "sides", "sided"} | {
    word for phrase in (*negation.PRE, *negation.POST) for word in phrase.split()}


@dataclass(frozen=True)
class Parts:
    """A rationale split at RadFM's separator sentence; without it, both parts are the whole text."""

    article: str
    features: str
    fallback: bool


def split_rationale(text: str) -> Parts:
    """Article before the first separator, features after it (RadFM joins them without spaces)."""
    found = _SEPARATOR.search(text)
    if found is None:
        return Parts(text.strip(), text.strip(), True)
    return Parts(text[: found.start()].strip(), text[found.end():].strip(), False)


def readable(text: str) -> str:
    """The separator set off as its own sentence, so "...pleura.The Radiographic ... follows.No lung
    nodule." does not run the article's last sentence into the first feature's negation scope."""
    return _SEPARATOR.sub(" " + RATIONALE_SEPARATOR + " ", text).strip()


@functools.lru_cache(maxsize=1)
def _porter() -> Any:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()


@functools.lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    """Porter stem after folding British digraphs (haemorrhage = hemorrhage, oedema = edema)."""
    return _porter().stem(word.replace("ae", "e").replace("oe", "e"))


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    stem: str
    key: bool  # a content word or number: what a finding is about


def tokenize(text: str) -> list[Token]:
    """Words and numbers with their offsets; number words become digits ("three" = "3"), so a count
    is a number that key terms must agree on."""
    return [Token(m.start(), m.end(), _NUMBERS.get(m.group()) or _stem(m.group()), m.group() not in _NOT_KEY)
            for m in _TOKEN.finditer(text.lower())]


@dataclass(frozen=True)
class Occurrence:
    """One place a finding is stated: its polarity and the side it is given (None: no side)."""

    negated: bool
    side: str | None


@dataclass(frozen=True)
class Finding:
    """A gold or generated finding: a CUI, or (for a concept-less feature) its key terms."""

    cui: str
    words: frozenset[str]
    numbers: frozenset[str]
    negated: bool
    side: str | None
    text: str


class Reading:
    """One text as the scorer reads it: sentences, negation scopes, tokens, concept mentions."""

    def __init__(self, text: str, mentions: Sequence[Mention]) -> None:
        self.text = text
        self.lower = text.lower()
        self.sentences = negation.sentence_spans(self.lower) or [(0, len(text))]
        self.scopes = negation.negation_scopes(text)
        self.tokens = tokenize(text)
        self.mentions = list(mentions)

    def negated(self, pos: int) -> bool:
        return negation.is_negated(pos, pos + 1, self.scopes)

    def sentence(self, pos: int) -> tuple[int, int]:
        return next(((s, e) for s, e in self.sentences if s <= pos < e), (0, len(self.text)))

    def side(self, start: int, end: int, inside: bool) -> str | None:
        """The side expression of the sentence nearest to ``[start, end)`` (the earlier one on ties).

        ``inside=False`` ignores side words within the span: they name anatomy ("left ventricular
        hypertrophy" is one concept), not where the finding is."""
        lo, hi = self.sentence(start)
        best: tuple[int, int, str] | None = None
        for m in _SIDE.finditer(self.lower, lo, hi):
            if m.end() <= start:
                gap = start - m.end()
            elif m.start() >= end:
                gap = m.start() - end
            elif inside:
                gap = 0
            else:
                continue
            candidate = (gap, m.start(), m.group())
            best = candidate if best is None or candidate < best else best
        if best is None:
            return None
        return best[2] if best[2] in ("left", "right") else "bilateral"

    def concept_findings(self) -> list[Finding]:
        return [Finding(m.cui, frozenset(), frozenset(), m.negated, self.side(m.start, m.end, False), m.text)
                for m in self.mentions]

    def feature_findings(self) -> list[Finding]:
        """A gold feature's findings: one per distinct CUI, else one of key terms, else none."""
        if self.mentions:
            first = {}
            for finding in self.concept_findings():
                first.setdefault(finding.cui, finding)
            return list(first.values())
        key = [t for t in self.tokens if t.key]
        if not key:
            return []
        numbers = frozenset(t.stem for t in key if t.stem.isdigit())
        words = frozenset(t.stem for t in key) - numbers
        side = self.side(key[0].start, key[-1].end, True)
        return [Finding("", words, numbers, self.negated(key[0].start), side, self.text)]

    def occurrences(self, finding: Finding, term_overlap: float) -> list[Occurrence]:
        """Where this text states ``finding``, in any polarity and on any side."""
        if finding.cui:
            return [Occurrence(m.negated, self.side(m.start, m.end, False)) for m in self.mentions
                    if m.cui == finding.cui]
        found = []
        terms = finding.words | finding.numbers
        for lo, hi in self.sentences:
            hits = [t for t in self.tokens if lo <= t.start < hi and t.key and t.stem in terms]
            stems = {t.stem for t in hits}
            if finding.numbers <= stems and len(stems & finding.words) >= term_overlap * len(finding.words) and hits:
                found.append(Occurrence(self.negated(hits[0].start), self.side(hits[0].start, hits[-1].end, True)))
        return found


def supported(claim: Finding, support: Sequence[Finding]) -> bool:
    """Same CUI and polarity as some gold finding and, where the gold ones give sides, one of those."""
    same = [s for s in support if s.cui == claim.cui and s.negated == claim.negated]
    sides = {s.side for s in same if s.side}
    return bool(same) and (claim.side is None or not sides or claim.side in sides)


@dataclass(frozen=True)
class Verdict:
    recalled: bool
    negation_error: bool | None  # None: the generation never mentions the finding
    laterality_error: bool | None  # None: not mentioned, or a side missing on either part


def judge(gold: Finding, found: Sequence[Occurrence]) -> Verdict:
    """Recalled: stated with the gold polarity and, where both give a side, on the gold side. Errors
    are judged on the occurrences with the gold polarity when there are any (a text may say both)."""
    if not found:
        return Verdict(False, None, None)
    same = [o for o in found if o.negated == gold.negated]
    sided = [o.side for o in (same or found) if o.side]
    laterality = None if gold.side is None or not sided else gold.side not in sided
    return Verdict(bool(same) and not laterality, not same, laterality)


def _rate(flags: Sequence[bool | None]) -> float | None:
    judged = [f for f in flags if f is not None]
    return sum(judged) / len(judged) if judged else None


def diagnoses(gen: Reading, title: Reading) -> list[tuple[int, str, bool]]:
    """The diagnoses ``gen`` states, first stated first: ``(start, text, matches the title)``."""
    needle = [t.stem for t in title.tokens]
    stems = [t.stem for t in gen.tokens]
    title_spans = [(gen.tokens[i].start, gen.tokens[i + len(needle) - 1].end)
                   for i in range(len(stems) - len(needle) + 1) if needle and stems[i: i + len(needle)] == needle]
    title_cuis = {m.cui for m in title.mentions}
    said = [m for m in gen.mentions if not m.negated]
    stated = [(m.start, m.text, m.cui in title_cuis or any(s < m.end and m.start < e for s, e in title_spans))
              for m in said]
    stated += [(s, gen.text[s:e], True) for s, e in title_spans
               if not gen.negated(s) and not any(s < m.end and m.start < e for m in said)]
    cued = [(c.end(), gen.sentence(c.start())[1]) for c in _CUE.finditer(gen.lower)]
    return sorted(stated, key=lambda d: (not any(lo <= d[0] < hi for lo, hi in cued), d[0]))


@dataclass(frozen=True)
class Gold:
    title: str | None
    features: tuple[str, ...]
    article: str
    parts: Parts
    from_split: bool  # features read from the reference text, not from the sample's metadata


def _features_part(prediction: str) -> str:
    """Where the case's features are read: after the separator when the generation has one (its
    article part describes the disease in general, which copying the article must not turn into
    recalled features), else the whole generation."""
    parts = split_rationale(prediction)
    return readable(prediction) if parts.fallback else parts.features


def gold_of(item: ScoreInput) -> Gold:
    """Title, features and article from the sample's metadata (the rationale reader keeps them),
    else from the reference text split at the separator (``radbench score`` on RadFM's CSV)."""
    parts = split_rationale(item.references[0] if item.references else "")
    meta = item.metadata or {}
    listed = meta.get("features")
    if isinstance(listed, list):
        features = tuple(str(f).strip() for f in listed if str(f).strip())
    else:
        features = tuple(f.strip() for f in _FEATURE_BREAK.split(parts.features) if f.strip())
    articles = meta.get("articles")
    if isinstance(articles, list):
        article = " ".join(str(a) for a in articles)
    else:
        article = "" if parts.fallback else parts.article
    title = str(meta.get("title") or "").strip() or None
    return Gold(title, features, article, parts, not isinstance(listed, list))


def _warn_fallback(count: int, total: int, what: str) -> None:
    if count:
        warnings.warn(f"rationale: {count} of {total} references lack the separator {RATIONALE_SEPARATOR!r}; "
                      f"{what} (counted in {FALLBACK_ID})", stacklevel=3)


class Rationale(Metric):
    """Diagnosis hit, feature recall/precision, laterality and negation errors (module docstring)."""

    group = "rationale"
    ids = CONCEPT_IDS
    version = "1"
    lower_is_better = ("laterality_error_rate", "negation_error_rate")
    SCHEMA = {"term_overlap": float, "cache": options.parse_bool}

    def __init__(self, term_overlap: float | None = None, cache: bool | None = None) -> None:
        args = options.resolve(self.group, {"term_overlap": term_overlap, "cache": cache}, self.SCHEMA)
        self.term_overlap = float(args.get("term_overlap", 0.5))
        if not 0.0 < self.term_overlap <= 1.0:
            raise UsageError(f"rationale.term_overlap must be within (0, 1], got {self.term_overlap}")
        self._umls = Umls(cache=args.get("cache"))

    def config(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "diagnosis": "first stated diagnosis (non-negated concept mentions and title occurrences; those after a "
                         "conclusion phrase first) matches the title by stemmed words or a shared CUI; _any: any",
            "features": "concepts (CUI, polarity, side) when the extractor finds any, else key terms (all numbers "
                        f"and >= {self.term_overlap} of the content-word stems in one sentence), read after the "
                        "generation's separator when it has one",
            "term_overlap": self.term_overlap,
            "precision": "generation concepts supported by the title, a gold feature or the article",
            "errors": "among gold findings the generation mentions: side disagrees (both localised) / "
                      "polarity disagrees",
            "undefined": "None, skipped by the aggregate: no title, no judgeable feature, no generation concept, "
                         "no matched finding",
            "level": "mean of per-sample values",
            "negation_version": negation.NEGATION_VERSION,
            "concepts": self._umls.spec().identity(),
        }

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        golds = [gold_of(item) for item in items]
        gens = [readable(item.prediction) for item in items]
        parts = [_features_part(item.prediction) for item in items]
        texts = list(dict.fromkeys([*gens, *parts, *(g.title for g in golds if g.title),
                                    *(f for g in golds for f in g.features), *(g.article for g in golds if g.article)]))
        readings = {t: Reading(t, found) for t, found in zip(texts, self._umls.extract(texts))}
        _warn_fallback(sum(g.from_split and g.parts.fallback for g in golds), len(golds),
                       "their features are read from the whole reference text")
        return [self._score_one(readings[gen], readings[part], gold, readings)
                for gen, part, gold in zip(gens, parts, golds)]

    def _score_one(self, gen: Reading, part: Reading, gold: Gold, readings: dict[str, Reading]) -> dict[str, Any]:
        """``gen`` is the whole generation (diagnosis, precision); ``part`` where its features are read."""
        out: dict[str, Any] = {"_rationale_split": "fallback" if gold.parts.fallback else "separator"}
        audit: dict[str, Any] = {}
        if gold.title:
            stated = diagnoses(gen, readings[gold.title])
            out["diagnosis_hit"] = float(bool(stated) and stated[0][2])
            out["diagnosis_hit_any"] = float(any(hit for _, _, hit in stated))
            audit["diagnoses"] = list(dict.fromkeys(text.lower() for _, text, _ in stated))
        else:
            out["diagnosis_hit"] = out["diagnosis_hit_any"] = None
        verdicts, features = [], []
        for text in gold.features:
            findings = readings[text].feature_findings()
            judged = [judge(f, part.occurrences(f, self.term_overlap)) for f in findings]
            verdicts += judged
            features.append({"feature": text, "rule": "concepts" if findings and findings[0].cui else
                             "terms" if findings else "unjudged",
                             "recalled": all(v.recalled for v in judged) if judged else None})
        judged_features = [f["recalled"] for f in features if f["recalled"] is not None]
        out["feature_recall"] = sum(judged_features) / len(judged_features) if judged_features else None
        support = [f for text in (gold.title, *gold.features, gold.article) if text
                   for f in readings[text].concept_findings()]
        claimed = {(f.cui, f.negated, f.side): f for f in gen.concept_findings()}
        unsupported = [f for f in claimed.values() if not supported(f, support)]
        out["feature_precision"] = 1 - len(unsupported) / len(claimed) if claimed else None
        out["laterality_error_rate"] = _rate([v.laterality_error for v in verdicts])
        out["negation_error_rate"] = _rate([v.negation_error for v in verdicts])
        audit["features"] = features
        audit["unsupported"] = [("no " if f.negated else "") + (f"{f.side} " if f.side else "") + f.text
                                for f in unsupported]
        out["_rationale"] = audit
        return out


class RationaleText(Metric):
    """BLEU and ROUGE of the article and features parts separately (module docstring)."""

    group = "rationale_text"
    ids = (*PART_IDS, FALLBACK_ID)
    version = "1"
    lower_is_better = (FALLBACK_ID,)

    SCHEMA = {"cache": options.parse_bool}

    def __init__(self, cache: bool | None = None) -> None:
        args = options.resolve(self.group, {"cache": cache}, self.SCHEMA)
        self._bleu = Bleu(cache=args.get("cache"))
        self._rouge = Rouge(cache=args.get("cache"))

    def config(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "separator": RATIONALE_SEPARATOR,
            "split": "reference and generation at the first separator (case and spacing tolerant); a generation "
                     "without it is compared whole with each part; a reference without it is scored whole",
            "reference": "the first reference",
            "bleu": self._bleu.config(),
            "rouge": self._rouge.config(),
            "undefined": "None where the reference part is empty",
        }

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        refs = [split_rationale(item.references[0] if item.references else "") for item in items]
        preds = [split_rationale(item.prediction) for item in items]
        out: list[dict[str, Any]] = [{FALLBACK_ID: float(r.fallback), "_rationale_split": "fallback" if r.fallback
                                      else "separator", "_rationale_bleu": {}} for r in refs]
        for part in PARTS:
            todo = [i for i, r in enumerate(refs) if getattr(r, part)]
            pairs = [ScoreInput(items[i].id, getattr(preds[i], part), (getattr(refs[i], part),)) for i in todo]
            for i, bleu, rouge in zip(todo, self._bleu.score(pairs), self._rouge.score(pairs)):
                values = {**bleu, **rouge}
                out[i].update({f"rationale_{part}_{m}": values[m] for m in (*BLEU_IDS, *ROUGE_IDS)})
                out[i]["_rationale_bleu"][part] = bleu["_bleu"]
            for i in set(range(len(items))) - set(todo):
                out[i].update({f"rationale_{part}_{m}": None for m in (*BLEU_IDS, *ROUGE_IDS)})
        _warn_fallback(sum(r.fallback for r in refs), len(refs), "their per-part scores use the whole text")
        return out

    @staticmethod
    def _stats(part: str, records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, ...]:
        """Per-record BLEU statistics of one part (zeros where undefined) and the defined mask."""
        stats = [(r.get("_rationale_bleu") or {}).get(part) for r in records]
        defined = np.array([s is not None for s in stats], float)
        blank = {"match": [0] * MAX_N, "total": [0] * MAX_N, "hyp_len": 0, "ref_len": 0}
        stats = [s or blank for s in stats]
        return (np.array([s["match"] for s in stats], float).reshape(-1, MAX_N),
                np.array([s["total"] for s in stats], float).reshape(-1, MAX_N),
                np.array([s["hyp_len"] for s in stats], float), np.array([s["ref_len"] for s in stats], float), defined)

    def aggregate(self, metric_id: str, records: Sequence[dict[str, Any]]) -> float | None:
        """Corpus BLEU per part (as ``bleu``), the mean of per-sample values otherwise."""
        if metric_id not in PART_IDS or not PART_IDS[metric_id][1].startswith("bleu"):
            return super().aggregate(metric_id, records)
        part, name = PART_IDS[metric_id]
        match, total, hyp, ref, defined = self._stats(part, records)
        if not defined.any():
            return None
        return float(bleu_from_sums(match.sum(0), total.sum(0), hyp.sum(), ref.sum())[int(name[-1]) - 1])

    def aggregate_many(self, metric_id: str, records: Sequence[dict[str, Any]], weights: np.ndarray) -> np.ndarray:
        if metric_id not in PART_IDS or not PART_IDS[metric_id][1].startswith("bleu"):
            return super().aggregate_many(metric_id, records, weights)
        part, name = PART_IDS[metric_id]
        match, total, hyp, ref, defined = self._stats(part, records)
        values = bleu_from_sums(weights @ match, weights @ total, weights @ hyp, weights @ ref)[:, int(name[-1]) - 1]
        return np.where(weights @ defined > 0, values, np.nan)
