"""UMLS concept precision/recall: the HPO index, negation, the empty-set convention, backends, caches."""

from __future__ import annotations

import hashlib
import json
import types
from pathlib import Path

import pytest

from radbench.errors import UsageError
from radbench.metrics import parallel
from radbench.metrics.base import ScoreInput
from radbench.metrics.umls import Umls, extractors, hpo, lexicon, matcher, negation, set_scores
from tests.conftest import refuse_download

TARGET = "No pneumothorax. Mild cardiomegaly with bilateral pleural effusions."
PNEUMOTHORAX, CARDIOMEGALY, PLEURAL_EFFUSION = "C0032326", "C0018800", "C0032227"
MILD, BILATERAL = "C1513302", "C0238767"  # HPO "Clinical modifier" terms, outside HP:0000118
ATELECTASIS, LETHARGY, AORTIC_ANEURYSM = "C0004144", "C0023380", "C0003486"


@pytest.fixture(scope="module")
def index(hpo_index: Path) -> Path:
    return hpo_index


@pytest.fixture(scope="module")
def metric(index: Path) -> Umls:
    return Umls(cache=False)


def concepts(metric: Umls, text: str) -> set[tuple[str, bool]]:
    return {(m.cui, m.negated) for m in metric.extract([text])[0]}


def states(metric: Umls, text: str) -> set[tuple[str, str]]:
    return {(m.cui, m.state) for m in metric.extract([text])[0]}


def test_index_is_stamped_restricted_to_finding_branches_and_reused(index: Path) -> None:
    stamp = json.loads((index / hpo.STAMP_FILE).read_text())
    assert stamp["root"] == "HP:0000118" and stamp["hpo_release"].startswith("hp/releases/")
    assert stamp["n_cuis"] > 6_000 and stamp["n_strings"] > 15_000
    rows = (index / "rrf" / "MRCONSO.RRF").read_text().splitlines()
    cuis = {row.split("|")[0] for row in rows}
    strings = {row.split("|")[14].lower() for row in rows}
    assert {PNEUMOTHORAX, CARDIOMEGALY, PLEURAL_EFFUSION} <= cuis and not {MILD, BILATERAL} & cuis
    assert LETHARGY not in cuis  # behaviour/constitutional branches are not imaging findings
    assert not {"fullness", "dullness"} & strings  # blocked by the radiology lexicon
    assert not [s for s in strings if "abnormality" in s.split()]  # grouping wording
    before = (index / hpo.STAMP_FILE).stat().st_mtime_ns
    assert hpo.ensure_hpo_index() == index and (index / hpo.STAMP_FILE).stat().st_mtime_ns == before


def test_stale_index_is_rebuilt_into_place(index: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RADBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(hpo, "build_index", lambda dest: (dest / "quickumls").mkdir() or {"n_cuis": 1})
    target = hpo.index_dir(hpo.expected_stamp())
    target.mkdir(parents=True)
    (target / hpo.STAMP_FILE).write_text('{"builder_version": "0"}')  # an older or interrupted build
    assert hpo.ensure_hpo_index() == target
    assert json.loads((target / hpo.STAMP_FILE).read_text())["n_cuis"] == 1
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temporary directory left


def test_target_sentence_concepts_and_negation(metric: Umls) -> None:
    assert concepts(metric, TARGET) == {(PNEUMOTHORAX, True), (CARDIOMEGALY, False), (PLEURAL_EFFUSION, False)}
    # "Collapsed lung" is HPO's (lay) synonym of pneumothorax; a collapsed lobe is atelectasis.
    assert concepts(metric, "Heart is enlarged. Small left pleural effusion; no collapsed lung.") == {
        (CARDIOMEGALY, False), (PLEURAL_EFFUSION, False), (PNEUMOTHORAX, True)}
    assert concepts(metric, "The right middle lobe is collapsed.") == {(ATELECTASIS, False)}


@pytest.mark.parametrize("text", [
    "No acute osseous abnormalities.",
    "Left PICC terminates in the descending thoracic aorta.",
    "Perihilar fullness.",
    "The catheter tip is in the descending thoracic aorta, and should be withdrawn.",
    "Endotracheal tube terminates 4 cm above the carina. Nasogastric tube in the stomach.",
    "The lungs are clear. Heart size is normal. No acute cardiopulmonary process.",
])
def test_issue_phrases_yield_no_concept(metric: Umls, text: str) -> None:
    assert metric.extract([text])[0] == []


@pytest.mark.parametrize(("text", "expected"), [
    ("Aortic calcifications.", {"RADBENCH:aortic_calcification"}),  # not dental pulp calcification
    ("Interstitial abnormality.", {"C0206062"}),  # pulmonary interstitium, not the kidney's
    ("Small left effusion.", {PLEURAL_EFFUSION}),
    ("Effusions.", {PLEURAL_EFFUSION}),
    ("The heart is mildly enlarged.", {CARDIOMEGALY}),
    ("Left lower lobe collapse.", {ATELECTASIS}),
    ("Patchy airspace opacities.", {"RADBENCH:lung_opacity"}),
    ("Infrarenal abdominal aortic aneurysm.", {AORTIC_ANEURYSM}),
])
def test_radiology_wording_maps_to_the_finding(metric: Umls, text: str, expected: set[str]) -> None:
    assert {m.cui for m in metric.extract([text])[0]} == expected


def test_negation_aware_variant_separates_no_pneumothorax_from_pneumothorax(metric: Umls) -> None:
    records = metric.score([
        ScoreInput("1", "Pneumothorax.", ("No pneumothorax.",)),
        ScoreInput("2", "Large right pneumothorax.", ("Right pneumothorax is present.",)),
        ScoreInput("3", TARGET, ("Mild cardiomegaly. Bilateral pleural effusions. Pneumothorax.",)),
        ScoreInput("4", "Possible pneumothorax.", ("Pneumothorax.",)),
    ])
    assert [r["umls_f1"] for r in records] == [1.0, 1.0, 1.0, 1.0]
    assert [r["umls_neg_f1"] for r in records] == [0.0, 1.0, pytest.approx(2 / 3), 0.0]
    assert records[0]["_umls"] == {"pred": [PNEUMOTHORAX], "ref": [f"{PNEUMOTHORAX}(neg)"]}
    assert records[3]["_umls"] == {"pred": [f"{PNEUMOTHORAX}(unc)"], "ref": [PNEUMOTHORAX]}


def test_precision_recall_definition_and_empty_set_convention(metric: Umls) -> None:
    assert set_scores({"a", "b"}, {"b", "c", "d"}) == (0.5, 1 / 3, pytest.approx(0.4))
    assert set_scores(set(), set()) == (1.0, 1.0, 1.0)
    assert set_scores(set(), {"a"}) == (0.0, 0.0, 0.0)
    assert set_scores({"a"}, set()) == (0.0, 0.0, 0.0)
    records = metric.score([
        ScoreInput("1", "Pleural effusion and cardiomegaly.", ("Pleural effusion, atelectasis and pneumothorax.",)),
        ScoreInput("2", "Unremarkable.", ("No acute cardiopulmonary process.",)),
        ScoreInput("3", "", ("Cardiomegaly.",)),
    ])
    assert [r["umls_precision"] for r in records] == [0.5, 1.0, 0.0]
    assert [r["umls_recall"] for r in records] == [pytest.approx(1 / 3), 1.0, 0.0]
    assert metric.aggregate("umls_precision", records) == pytest.approx(0.5)  # macro mean


@pytest.mark.parametrize(
    ("text", "negated"),
    [
        ("There is no focal consolidation, pleural effusion or pneumothorax.", ["pleural effusion", "pneumothorax"]),
        ("Pleural effusion is not seen, but there is a pneumothorax.", ["pleural effusion"]),
        ("No change in the pleural effusion.", []),
        ("Pneumothorax cannot be excluded.", []),
        ("Without evidence of pneumothorax. Pleural effusion.", ["pneumothorax"]),
        ("Pneumothorax has resolved. No new pleural effusion.", ["pleural effusion", "pneumothorax"]),
        ("Resolved pneumothorax. Pleural effusion.", ["pneumothorax"]),
        ("Pneumothorax is absent.", ["pneumothorax"]),
        ("Negative for pneumothorax or pleural effusion.", ["pleural effusion", "pneumothorax"]),
        ("No pneumothorax, however pleural effusion persists.", ["pneumothorax"]),
    ],
)
def test_negation_triggers_and_scopes(text: str, negated: list[str]) -> None:
    scopes = negation.negation_scopes(text)
    lowered = text.lower()
    found = [term for term in ("pleural effusion", "pneumothorax")
             if term in lowered and negation.is_negated(lowered.index(term), 0, scopes)]
    assert found == negated


@pytest.mark.parametrize(("text", "expected"), [
    ("No effusion or pneumothorax.", {(PLEURAL_EFFUSION, "negated"), (PNEUMOTHORAX, "negated")}),
    ("Pneumothoraces are absent.", {(PNEUMOTHORAX, "negated")}),
    ("Resolved right pneumothorax.", {(PNEUMOTHORAX, "negated")}),
    ("The heart is not enlarged.", {(CARDIOMEGALY, "negated")}),
    ("Possible small left pneumothorax.", {(PNEUMOTHORAX, "uncertain")}),
    ("Pneumothorax cannot be excluded.", {(PNEUMOTHORAX, "uncertain")}),
    ("Small effusions may be present.", {(PLEURAL_EFFUSION, "uncertain")}),
    ("Basilar opacity may represent atelectasis.", {("RADBENCH:lung_opacity", "asserted"), (ATELECTASIS, "uncertain")}),
    ("No pleural effusion, possibly atelectasis.", {(PLEURAL_EFFUSION, "negated"), (ATELECTASIS, "uncertain")}),
    ("Small pneumothorax versus skin fold.", {(PNEUMOTHORAX, "uncertain")}),
    ("Cardiomegaly, likely related to fluid status.", {(CARDIOMEGALY, "asserted")}),
    ("No focal opacity to suggest pneumonia.", {("RADBENCH:lung_opacity", "negated"), ("C0032285", "negated")}),
])
def test_negation_and_uncertainty_states(metric: Umls, text: str, expected: set[tuple[str, str]]) -> None:
    assert states(metric, text) == expected


def test_matcher_keeps_head_nouns_and_folds_plurals_and_spelling() -> None:
    m = matcher.PhraseMatcher([("pleural effusion", "E"), ("effusion", "e"), ("heart is enlarged", "C"),
                               ("aortic aneurysm", "A"), ("metastasis", "M"), ("edema", "O")])
    found = lambda text: [(text[x.start:x.end], x.concept, x.negated_inside) for x in m.find(text)]  # noqa: E731
    assert found("Bilateral pleural effusions.") == [("pleural effusions", "E", False)]
    assert found("The heart is moderately enlarged; effusion.") == [("heart is moderately enlarged", "C", False),
                                                                    ("effusion", "e", False)]
    assert found("The heart is not enlarged.") == [("heart is not enlarged", "C", True)]
    assert found("Aortic atherosclerosis. Thoracic aorta. Aneurysmal.") == []  # no partial or fuzzy match
    assert found("Metastases and oedema.") == [("Metastases", "M", False), ("oedema", "O", False)]
    assert found("heart is enlarged left") == [("heart is enlarged", "C", False)]
    assert [matcher.fold(w) for w in ("opacities", "masses", "granulomas", "kidneys", "stenosis", "abscess")] == [
        "opacity", "mass", "granuloma", "kidney", "stenosis", "abscess"]


def test_lexicon_ids_are_hpo_cuis_or_marked_local() -> None:
    _, terms = hpo.parse_obo(hpo.hpo_obo_path().read_text(encoding="utf-8"))
    hpo_cuis = {cui for term in terms.values() for cui in term.cuis}
    concepts, blocked = lexicon.load()
    assert len(concepts) > 80 and blocked
    for concept in concepts:
        assert concept.id.startswith(lexicon.LOCAL_PREFIX) or concept.id in hpo_cuis, concept
        assert concept.forms, concept
    forms = [matcher.phrase_key(form) for form, _ in lexicon.entries()]
    assert len(forms) == len(set(forms)), "a surface form is listed for two concepts"


@pytest.fixture(scope="module")
def quickumls_db(index: Path) -> Path:
    """The HPO index built into a QuickUMLS database: stands in for a user's licensed UMLS index.
    quickumls is an optional extra (its simstring extension does not import on Python >= 3.12)."""
    pytest.importorskip("quickumls", reason="the optional quickumls extra is not installed")
    return hpo.build_quickumls_db(index)


def test_quickumls_never_downloads_and_uses_the_shipped_stopwords(quickumls_db: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    monkeypatch.setattr(nltk, "download", refuse_download)
    monkeypatch.setattr(nltk.corpus, "stopwords", types.SimpleNamespace(words=refuse_download))
    spec = extractors.BackendSpec("quickumls", index=str(quickumls_db), semtypes="all")
    extractor = extractors.QuickUmlsExtractor(spec)
    assert "the" in extractor.matcher._stopwords and len(extractor.matcher._stopwords) >= 179
    assert [cui for _, _, cui in extractor.spans("Cardiomegaly.")] == [CARDIOMEGALY]


def test_user_quickumls_index_backend(quickumls_db: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs umls.index"):
        Umls(backend="quickumls")
    with pytest.raises(UsageError, match="not a QuickUMLS index"):
        Umls(backend="quickumls", index=str(tmp_path))
    user = Umls.from_settings({"backend": "quickumls", "index": str(quickumls_db), "cache": "false"})
    assert user.config()["backend"] == "quickumls" and user.config()["semtypes"] == "quickumls-default"
    assert user.source_label == user.config()["source_label"] == "QuickUMLS index"
    # QuickUMLS's default semantic types include T047, the type every HPO row carries.
    assert concepts(user, TARGET) == {(PNEUMOTHORAX, True), (CARDIOMEGALY, False), (PLEURAL_EFFUSION, False)}


def test_default_backend_labels_its_concept_source(metric: Umls) -> None:
    config = metric.config()
    assert metric.source_label == config["source_label"] == "HPO index"
    assert config["backend"] == "hpo" and "radbench radiology lexicon" in config["concept_source"]
    assert config["index"]["lexicon_sha256"] == hashlib.sha256(lexicon.LEXICON_PATH.read_bytes()).hexdigest()


def test_scispacy_backend_absent_is_one_clear_error() -> None:
    import importlib.util

    if importlib.util.find_spec("scispacy") is not None:
        pytest.fail("scispacy is installed here; this test checks the error on machines without it")
    with pytest.raises(UsageError, match="scispacy.*en_core_sci_lg.*not on PyPI"):
        Umls(backend="scispacy")
    with pytest.raises(UsageError, match="unknown backend 'metamap'"):
        Umls(backend="metamap")


def test_scispacy_extractor_takes_the_top_linked_cui_per_entity() -> None:
    def ent(start: int, end: int, kb: list[tuple[str, float]]) -> types.SimpleNamespace:
        return types.SimpleNamespace(start_char=start, end_char=end, _=types.SimpleNamespace(kb_ents=kb))

    doc = types.SimpleNamespace(ents=[ent(3, 15, [(PNEUMOTHORAX, 0.99), ("C9999999", 0.8)]), ent(17, 21, [])])
    extractor = extractors.ScispacyExtractor(extractors.BackendSpec("scispacy"), nlp=lambda text: doc)
    found = extractors.mentions(extractor, "No pneumothorax. Mild")
    assert [(m.cui, m.negated, m.text) for m in found] == [(PNEUMOTHORAX, True, "pneumothorax")]


def stand_in_scispacy() -> object:
    """A real spaCy pipeline standing in for en_core_sci_lg + the UMLS linker (neither is on PyPI):
    an entity ruler finds the spans, a component attaches linker-style ``kb_ents`` candidates."""
    spacy = pytest.importorskip("spacy")
    from spacy.language import Language
    from spacy.tokens import Span

    if not Span.has_extension("kb_ents"):
        Span.set_extension("kb_ents", default=[])
    linked = {"pneumothorax": [(PNEUMOTHORAX, 0.99)], "cardiomegaly": [(CARDIOMEGALY, 0.97)]}

    @Language.component("radbench_test_linker")
    def link(doc: object) -> object:
        for entity in doc.ents:
            entity._.kb_ents = linked.get(entity.text.lower(), [])
        return doc

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "ENTITY", "pattern": [{"LOWER": w}]} for w in ("pneumothorax", "cardiomegaly", "tube")])
    nlp.add_pipe("radbench_test_linker")
    return nlp


def test_scispacy_entities_mode_counts_every_span_like_radfm() -> None:
    nlp = stand_in_scispacy()
    text = "No pneumothorax. Cardiomegaly. Tube in place."
    linker = extractors.ScispacyExtractor(extractors.BackendSpec("scispacy", mode="linker"), nlp=nlp)
    entities = extractors.ScispacyExtractor(extractors.BackendSpec("scispacy", mode="entities"), nlp=nlp)
    assert [(m.cui, m.state) for m in extractors.mentions(linker, text)] == [
        (PNEUMOTHORAX, "negated"), (CARDIOMEGALY, "asserted")]
    assert [(m.cui, m.state) for m in extractors.mentions(entities, text)] == [
        (PNEUMOTHORAX, "negated"), (CARDIOMEGALY, "asserted"), ("TEXT:tube", "asserted")]
    assert extractors.BackendSpec("scispacy", mode="entities").source_label == "scispaCy UMLS (entities)"
    with pytest.raises(UsageError, match="only backend scispacy has modes"):
        Umls(mode="entities")


def test_references_are_extracted_once_across_models(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extracted: list[str] = []
    original = extractors.extract_chunk
    monkeypatch.setattr(extractors, "extract_chunk",
                        lambda texts, spec: extracted.extend(texts) or original(texts, spec))
    refs = [f"Case {i}: mild cardiomegaly and pleural effusion." for i in range(4)]
    model_a = "Model A: no pneumothorax."
    first = Umls().score([ScoreInput(str(i), model_a, (r,)) for i, r in enumerate(refs)])
    assert sorted(extracted) == sorted([model_a, *refs])
    extracted.clear()
    Umls().score([ScoreInput(str(i), f"Model B: pneumothorax {i}.", (r,)) for i, r in enumerate(refs)])
    assert sorted(extracted) == sorted(f"Model B: pneumothorax {i}." for i in range(4))
    extracted.clear()
    assert Umls().score([ScoreInput(str(i), model_a, (r,)) for i, r in enumerate(refs)]) == first
    assert extracted == []


@pytest.mark.slow
def test_parallel_extraction_equals_serial(metric: Umls) -> None:
    texts = [TARGET, "Heart is enlarged. Small left pleural effusion; no collapsed lung.", "", "Atelectasis."] * 3
    spec = metric.spec()
    serial = extractors.extract_chunk(texts, spec)
    assert parallel.chunked_map(extractors.extract_chunk, texts, min_items=1, workers=2, spec=spec) == serial
