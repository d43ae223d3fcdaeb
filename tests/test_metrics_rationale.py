"""Rationale metrics: hand-built cases with known answers, the split rule on RadFM's format, conventions."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from radbench import registry, scoring
from radbench.errors import UsageError
from radbench.metrics.base import ScoreInput
from radbench.metrics.bleu import Bleu
from radbench.metrics.rationale import CONCEPT_IDS, Rationale, RationaleText, split_rationale
from radbench.metrics.rouge import Rouge
from radbench.runner import load_task
from radbench.tasks.datasets.radfm_files import RATIONALE_SEPARATOR as SEP

ARTICLE = "A pleural effusion is an abnormal amount of fluid between the visceral and parietal pleura."
FEATURES = ["Right pleural effusion.", "Meniscus at the right costophrenic angle.", "No pneumothorax."]


@pytest.fixture(scope="module")
def metric(hpo_index: Path) -> Rationale:
    return Rationale(cache=False)


def radfm_reference(articles: list[str], features: list[str]) -> str:
    """RadFM's own construction (Radiofeatures_Dataset): no spaces around the separator."""
    return " ".join(articles) + SEP + " ".join(features)


def item(prediction: str, title: str | None = "Pleural effusion", features: list[str] | None = None,
         article: str = ARTICLE, metadata: bool = True, sid: str = "s") -> ScoreInput:
    feats = FEATURES if features is None else features
    meta: dict[str, Any] = {"features": feats, "articles": [article]} if metadata else {}
    if metadata and title:
        meta["title"] = title
    return ScoreInput(sid, prediction, (radfm_reference([article], feats),), metadata=meta)


def one(metric: Rationale, prediction: str, **kwargs: Any) -> dict[str, Any]:
    return metric.score([item(prediction, **kwargs)])[0]


# --- the reference's parts ---------------------------------------------------------------------------


def test_split_rule_on_radfms_format_and_a_looser_generation() -> None:
    reference = radfm_reference(["Article one.", "Article two."], ["Feature 1a.", "Feature 1b."])
    assert reference == "Article one. Article two.The Radiographic features can be summarized as follows.Feature 1a. Feature 1b."
    parts = split_rationale(reference)
    assert (parts.article, parts.features, parts.fallback) == ("Article one. Article two.", "Feature 1a. Feature 1b.", False)
    loose = split_rationale("Art.  the radiographic FEATURES can be summarized\nas follows. Feat.")
    assert (loose.article, loose.features, loose.fallback) == ("Art.", "Feat.", False)
    whole = split_rationale(" Pleural effusion, right side. ")
    assert (whole.article, whole.features, whole.fallback) == ("Pleural effusion, right side.",) * 2 + (True,)


def test_the_rationale_reader_builds_references_the_split_rule_inverts() -> None:
    from radbench.tasks.demo import DemoDataset

    samples = DemoDataset().load("rationale", "test")
    assert samples
    for sample in samples:
        parts = split_rationale(sample.references[0])
        assert not parts.fallback
        assert parts.article == " ".join(sample.metadata["articles"])
        assert parts.features == " ".join(sample.metadata["features"])


def test_per_part_text_scores_separate_the_article_from_the_features() -> None:
    text = RationaleText(cache=False)
    copy_article = item(ARTICLE + SEP)
    good_features = item("Something else entirely." + SEP + " ".join(FEATURES))
    records = text.score([copy_article, good_features])
    assert records[0]["rationale_article_rougeL"] == 1.0 and records[0]["rationale_features_rougeL"] == 0.0
    assert records[1]["rationale_features_rougeL"] == 1.0 and records[1]["rationale_article_rougeL"] < 0.2
    # Each part's corpus BLEU is bleu's own corpus BLEU over that part's pairs.
    bleu = Bleu(cache=False)
    parts = [split_rationale(r) for r in (copy_article.prediction, good_features.prediction)]
    ref = split_rationale(copy_article.references[0])
    direct = bleu.score([ScoreInput(str(i), p.features, (ref.features,)) for i, p in enumerate(parts)])
    assert text.aggregate("rationale_features_bleu4", records) == pytest.approx(bleu.aggregate("bleu4", direct), abs=1e-12)
    # The bootstrap path (weighted resamples) agrees with the point estimate on the identity weights.
    weights = np.ones((1, 2))
    many = text.aggregate_many("rationale_features_bleu4", records, weights)
    assert many[0] == pytest.approx(text.aggregate("rationale_features_bleu4", records), abs=1e-12)
    assert text.aggregate_many("rationale_article_rougeL", records, weights)[0] == pytest.approx(np.mean(
        [r["rationale_article_rougeL"] for r in records]))


def test_a_generation_without_the_separator_is_compared_whole_with_each_part() -> None:
    record = RationaleText(cache=False).score([item(" ".join(FEATURES))])[0]
    rouge = Rouge(cache=False).score([ScoreInput("x", " ".join(FEATURES), (" ".join(FEATURES),))])[0]
    assert record["rationale_features_rougeL"] == rouge["rougeL"] == 1.0
    assert record["_rationale_split"] == "separator"  # the flag describes the reference


def test_missing_separator_falls_back_to_whole_text_with_a_counted_warning() -> None:
    text = RationaleText(cache=False)
    plain = ScoreInput("p", "Right pleural effusion.", ("Right pleural effusion. No pneumothorax.",))
    with pytest.warns(UserWarning, match=r"1 of 2 references lack the separator"):
        records = text.score([plain, item(ARTICLE + SEP + " ".join(FEATURES))])
    whole = Rouge(cache=False).score([plain])[0]["rougeL"]
    assert records[0]["_rationale_split"] == "fallback" and records[1]["_rationale_split"] == "separator"
    assert records[0]["rationale_article_rougeL"] == records[0]["rationale_features_rougeL"] == whole
    assert text.aggregate("rationale_split_fallback_rate", records) == 0.5
    assert "rationale_split_fallback_rate" in text.lower_is_better
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when every reference has the separator
        text.score([item(ARTICLE + SEP)])


def test_an_empty_part_is_undefined_and_skipped() -> None:
    text = RationaleText(cache=False)
    no_article = ScoreInput("n", "Right pleural effusion.", (SEP + "Right pleural effusion.",))
    records = text.score([no_article, item(ARTICLE + SEP)])
    assert records[0]["rationale_article_rougeL"] is None and records[0]["rationale_article_bleu4"] is None
    assert text.aggregate("rationale_article_rougeL", records) == 1.0
    assert text.aggregate("rationale_article_bleu1", records[:1]) is None
    assert np.isnan(text.aggregate_many("rationale_article_bleu1", records, np.array([[1.0, 0.0]])))[0]


# --- diagnosis ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("prediction", "title", "hit", "hit_any"), [
    # the title's words, or the same CUI in other words
    ("Right pleural effusions.", "Pleural effusion", 1.0, 1.0),
    ("Intracranial hemorrhage in the right hemisphere.", "Intracranial haemorrhage", 1.0, 1.0),
    ("Bleeding within the skull, right hemisphere.", "Intracranial haemorrhage", 1.0, 1.0),
    ("Collapsed lung on the left.", "Pneumothorax", 1.0, 1.0),
    ("Three pulmonary nodules in the left lung.", "Pulmonary nodule", 1.0, 1.0),  # no CUI in HPO: words
    # a wrong diagnosis, a denied one, none at all
    ("Pneumothorax on the right.", "Pleural effusion", 0.0, 0.0),
    ("No pleural effusion. Normal study.", "Pleural effusion", 0.0, 0.0),
    ("", "Pleural effusion", 0.0, 0.0),
    # several: the first stated counts; a conclusion phrase states its diagnosis first
    ("Pneumothorax. A small right pleural effusion as well.", "Pleural effusion", 0.0, 1.0),
    ("Cerebral oedema and an intracranial haemorrhage.", "Intracranial haemorrhage", 0.0, 1.0),
    ("Hyperdense lesion with cerebral oedema, consistent with intracranial haemorrhage.",
     "Intracranial haemorrhage", 1.0, 1.0),
    ("Intracranial haemorrhage. The differential diagnosis: subdural haematoma.", "Intracranial haemorrhage", 1.0, 1.0),
    # RadFM writes "...pneumothorax.The Radiographic ... follows.Right ...": the "no" ends with its sentence
    ("No pneumothorax." + SEP + "Right pleural effusion.", "Pleural effusion", 1.0, 1.0),
])
def test_diagnosis_hit_first_stated_and_any(metric: Rationale, prediction: str, title: str, hit: float,
                                            hit_any: float) -> None:
    record = one(metric, prediction, title=title)
    assert (record["diagnosis_hit"], record["diagnosis_hit_any"]) == (hit, hit_any), record["_rationale"]


def test_no_title_leaves_the_diagnosis_undefined(metric: Rationale) -> None:
    record = one(metric, "Right pleural effusion.", title=None)
    assert record["diagnosis_hit"] is None and record["diagnosis_hit_any"] is None
    assert record["feature_recall"] is not None


# --- features, sides, polarity -----------------------------------------------------------------------


def test_exact_rationale_scores_perfectly(metric: Rationale) -> None:
    record = one(metric, radfm_reference([ARTICLE], FEATURES))
    assert {k: record[k] for k in CONCEPT_IDS} == {
        "diagnosis_hit": 1.0, "diagnosis_hit_any": 1.0, "feature_recall": 1.0, "feature_precision": 1.0,
        "laterality_error_rate": 0.0, "negation_error_rate": 0.0}
    assert [f["rule"] for f in record["_rationale"]["features"]] == ["concepts", "terms", "concepts"]


def test_wrong_side(metric: Rationale) -> None:
    record = one(metric, "Left pleural effusion. Meniscus at the left costophrenic angle. No pneumothorax.")
    assert record["diagnosis_hit"] == 1.0
    assert record["feature_recall"] == pytest.approx(1 / 3)  # only "No pneumothorax." survives
    assert record["laterality_error_rate"] == 1.0 and record["negation_error_rate"] == 0.0
    assert record["feature_precision"] == 0.5 and record["_rationale"]["unsupported"] == ["left pleural effusion"]


def test_negated_finding(metric: Rationale) -> None:
    record = one(metric, "Right pleural effusion with a meniscus at the right costophrenic angle. Small pneumothorax.")
    assert record["feature_recall"] == pytest.approx(2 / 3)
    assert record["negation_error_rate"] == pytest.approx(1 / 3) and record["laterality_error_rate"] == 0.0
    assert record["feature_precision"] == 0.5 and record["_rationale"]["unsupported"] == ["pneumothorax"]
    denied = one(metric, "No pleural effusion. No pneumothorax.")
    assert denied["negation_error_rate"] == 0.5 and denied["laterality_error_rate"] is None


def test_copying_the_article_recalls_no_feature(metric: Rationale) -> None:
    features = ["Meniscus at the right costophrenic angle.", "Mediastinal shift to the left.", "No pneumothorax."]
    copy = item(ARTICLE, features=features)
    record = metric.score([copy])[0]
    text = RationaleText(cache=False).score([copy])[0]
    assert record["diagnosis_hit"] == 1.0 and record["feature_recall"] == 0.0
    assert record["feature_precision"] == 1.0  # the article supports what it says
    assert text["rationale_article_rougeL"] == 1.0 and text["rationale_features_rougeL"] < 0.2
    # In RadFM's format the article part never counts as stating a feature, not even one it names.
    radfm_style = one(metric, ARTICLE + SEP)
    assert radfm_style["feature_recall"] == 0.0 and radfm_style["diagnosis_hit"] == 1.0


def test_key_terms_stand_in_for_features_the_vocabulary_lacks(metric: Rationale) -> None:
    features = ["Hyperdense focal area in the left cerebral hemisphere.", "Area diameter about 20 mm.",
                "Three round foci.", "No lung focus."]
    kwargs = {"title": "Intracranial haemorrhage", "features": features, "article": ""}
    good = one(metric, "A hyperdense area in the left hemisphere, about 20 mm in diameter. 3 round foci. "
                       "No focus in the lung.", **kwargs)
    assert good["feature_recall"] == 1.0 and {f["rule"] for f in good["_rationale"]["features"]} == {"terms"}
    bad = one(metric, "A hyperdense area in the right hemisphere, about 25 mm in diameter. Two round foci. "
                      "A focus in the right lung.", **kwargs)
    assert bad["feature_recall"] == 0.0
    # matched: the area (wrong side) and the lung focus (wrong polarity); sizes and counts differ
    assert bad["laterality_error_rate"] == 1.0 and bad["negation_error_rate"] == 0.5


def test_term_overlap_is_an_argument(metric: Rationale) -> None:
    kwargs = {"features": ["Hyperdense focal area in the left cerebral hemisphere."], "article": ""}
    assert one(metric, "Hyperdense area, left hemisphere.", **kwargs)["feature_recall"] == 1.0
    strict = Rationale.from_settings({"term_overlap": "1", "cache": "false"})
    assert strict.term_overlap == 1.0 and strict.config()["term_overlap"] == 1.0
    assert one(strict, "Hyperdense area, left hemisphere.", **kwargs)["feature_recall"] == 0.0
    with pytest.raises(UsageError, match="term_overlap"):
        Rationale(term_overlap=0.0)


def test_undefined_values_are_none_and_skipped_by_the_aggregate(metric: Rationale) -> None:
    records = metric.score([
        item("Nothing to report.", features=["As above."], article=""),  # no judgeable feature, no concept
        item("Right pleural effusion.", features=["Right pleural effusion."], sid="b"),
    ])
    first = records[0]
    assert first["feature_recall"] is None and first["feature_precision"] is None
    assert first["laterality_error_rate"] is None and first["negation_error_rate"] is None
    assert first["_rationale"]["features"] == [{"feature": "As above.", "rule": "unjudged", "recalled": None}]
    for metric_id in ("feature_recall", "feature_precision", "laterality_error_rate", "negation_error_rate"):
        assert metric.aggregate(metric_id, records) == records[1][metric_id]
    assert metric.aggregate("diagnosis_hit", records) == 0.5  # a diagnosis never stated is a miss, not undefined


def test_without_metadata_the_gold_comes_from_the_split_reference(metric: Rationale) -> None:
    """``radbench score`` on RadFM's CSV has only the reference text: features are its sentences."""
    bare = item("Left pleural effusion. No pneumothorax.", metadata=False)
    record = metric.score([bare])[0]
    assert record["diagnosis_hit"] is None
    assert [f["feature"] for f in record["_rationale"]["features"]] == FEATURES
    assert record["feature_recall"] == pytest.approx(1 / 3) and record["laterality_error_rate"] == 1.0
    plain = ScoreInput("p", "Left pleural effusion.", ("Right pleural effusion. No pneumothorax.",))
    with pytest.warns(UserWarning, match="features are read from the whole reference"):
        fallback = metric.score([plain])[0]
    assert fallback["_rationale_split"] == "fallback" and fallback["laterality_error_rate"] == 1.0


def test_rationale_task_scores_every_default_id_with_directions(metric: Rationale) -> None:
    task = load_task("rationale")
    groups = scoring.resolve_metrics(task.default_metrics)
    assert {"rationale", "rationale_text"} <= set(groups)
    samples = [scoring.Scored(item(p, sid=str(i))) for i, p in enumerate(
        [radfm_reference([ARTICLE], FEATURES), "Left pleural effusion. Small pneumothorax.", ARTICLE])]
    report = scoring.score(samples, task.default_metrics, iterations=50)
    assert report.metrics["diagnosis_hit"]["value"] == 1.0
    assert report.metrics["laterality_error_rate"]["n"] == 2  # the article copy matches no finding
    assert report.configs["rationale"]["lower_is_better"] == ["laterality_error_rate", "negation_error_rate"]
    assert report.configs["rationale_text"]["lower_is_better"] == ["rationale_split_fallback_rate"]
    for metric_id, group in registry.METRIC_IDS.items():
        if group.startswith("rationale"):
            assert metric_id in registry.get("metrics", group).ids
