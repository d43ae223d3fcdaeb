"""UMLS concept precision/recall: the HPO index, negation, the empty-set convention, backends, caches."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from radbench.errors import UsageError
from radbench.metrics import parallel
from radbench.metrics.base import ScoreInput
from radbench.metrics.umls import Umls, extractors, hpo, negation, set_scores
from tests.conftest import refuse_download

TARGET = "No pneumothorax. Mild cardiomegaly with bilateral pleural effusions."
PNEUMOTHORAX, CARDIOMEGALY, PLEURAL_EFFUSION = "C0032326", "C0018800", "C0032227"
MILD, BILATERAL = "C1513302", "C0238767"  # HPO "Clinical modifier" terms, outside HP:0000118


@pytest.fixture(scope="module")
def index(hpo_index: Path) -> Path:
    return hpo_index


@pytest.fixture(scope="module")
def metric(index: Path) -> Umls:
    return Umls(cache=False)


def concepts(metric: Umls, text: str) -> set[tuple[str, bool]]:
    return {(m.cui, m.negated) for m in metric.extract([text])[0]}


def test_index_is_stamped_restricted_to_phenotypic_abnormalities_and_reused(index: Path) -> None:
    stamp = json.loads((index / hpo.STAMP_FILE).read_text())
    assert stamp["root"] == "HP:0000118" and stamp["hpo_release"].startswith("hp/releases/")
    assert stamp["n_cuis"] > 10_000 and stamp["n_strings"] > 25_000
    rows = (index / "rrf" / "MRCONSO.RRF").read_text().splitlines()
    cuis = {row.split("|")[0] for row in rows}
    assert {PNEUMOTHORAX, CARDIOMEGALY, PLEURAL_EFFUSION} <= cuis and not {MILD, BILATERAL} & cuis
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
    assert concepts(metric, "Heart is enlarged. Small left pleural effusion; no collapsed lung.") == {
        (PLEURAL_EFFUSION, False), (PNEUMOTHORAX, True)}


def test_negation_aware_variant_separates_no_pneumothorax_from_pneumothorax(metric: Umls) -> None:
    records = metric.score([
        ScoreInput("1", "Pneumothorax.", ("No pneumothorax.",)),
        ScoreInput("2", "Large right pneumothorax.", ("Right pneumothorax is present.",)),
        ScoreInput("3", TARGET, ("Mild cardiomegaly. Bilateral pleural effusions. Pneumothorax.",)),
    ])
    assert [r["umls_f1"] for r in records] == [1.0, 1.0, 1.0]
    assert [r["umls_neg_f1"] for r in records] == [0.0, 1.0, pytest.approx(2 / 3)]
    assert records[0]["_umls"] == {"pred": [PNEUMOTHORAX], "ref": [f"{PNEUMOTHORAX}(neg)"]}


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
    ],
)
def test_negation_triggers_and_scopes(text: str, negated: list[str]) -> None:
    scopes = negation.negation_scopes(text)
    lowered = text.lower()
    found = [term for term in ("pleural effusion", "pneumothorax")
             if term in lowered and negation.is_negated(lowered.index(term), 0, scopes)]
    assert found == negated


def test_quickumls_never_downloads_and_uses_the_shipped_stopwords(index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nltk

    monkeypatch.setattr(nltk, "download", refuse_download)
    monkeypatch.setattr(nltk.corpus, "stopwords", types.SimpleNamespace(words=refuse_download))
    spec = extractors.BackendSpec("hpo", index=str(index / "quickumls"), semtypes="all")
    extractor = extractors.QuickUmlsExtractor(spec)
    assert "the" in extractor.matcher._stopwords and len(extractor.matcher._stopwords) >= 179
    assert [cui for _, _, cui in extractor.spans("Cardiomegaly.")] == [CARDIOMEGALY]


def test_user_quickumls_index_backend(index: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs umls.index"):
        Umls(backend="quickumls")
    with pytest.raises(UsageError, match="not a QuickUMLS index"):
        Umls(backend="quickumls", index=str(tmp_path))
    monkeypatch.setenv("RADBENCH_METRIC_ARGS", f"umls.backend=quickumls,umls.index={index / 'quickumls'}")
    user = Umls(cache=False)
    assert user.config()["backend"] == "quickumls" and user.config()["semtypes"] == "quickumls-default"
    # QuickUMLS's default semantic types include T047, the type every HPO row carries.
    assert concepts(user, TARGET) == {(PNEUMOTHORAX, True), (CARDIOMEGALY, False), (PLEURAL_EFFUSION, False)}


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
