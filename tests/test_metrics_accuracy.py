"""Closed-set accuracy, its parse-failure rate, and open-answer exact match / token recall."""

from __future__ import annotations

import difflib

import pytest

from radbench.errors import UsageError
from radbench.metrics.accuracy import Accuracy, match_option
from radbench.metrics.base import ScoreInput

MODALITIES = ("CT", "MRI", "X-ray", "Ultrasound")


def closed(pred: str, ref: str, options: tuple[str, ...] = ()) -> ScoreInput:
    return ScoreInput("q", pred, (ref,), options, "closed")


@pytest.mark.parametrize(
    ("prediction", "expected", "rule"),
    [
        ("MRI", "MRI", "exact"),
        ("x ray.", "X-ray", "exact"),
        ("CT scan of the abdomen", "CT", "leading"),
        ("This image is an ultrasound of the liver", "Ultrasound", "contained"),
        ("ultrasund", "Ultrasound", "similarity"),
        ("This is an MRI, not a CT", None, "ambiguous"),
        ("a photograph", None, "no_match"),
        ("", None, "empty"),
    ],
)
def test_generation_maps_to_an_option_or_to_nothing(prediction: str, expected: str | None, rule: str) -> None:
    assert match_option(prediction, MODALITIES, 0.5) == (expected, rule)


def test_minimum_similarity_is_what_separates_a_typo_from_an_unrelated_answer() -> None:
    # difflib ratio = 2*matches/total: "ultrasund" vs "ultrasound" is 2*9/19 = 0.947; "a photograph" vs
    # every option stays below 0.5, so MedVInT's bare argmax would pick an option, radbench does not.
    assert difflib.SequenceMatcher(None, "ultrasund", "ultrasound").ratio() == pytest.approx(18 / 19)
    assert max(difflib.SequenceMatcher(None, "a photograph", o.lower()).ratio() for o in MODALITIES) < 0.5
    assert match_option("ultrasund", MODALITIES, 0.95) == (None, "no_match")


def test_longer_contained_option_wins_over_the_option_inside_it() -> None:
    options = ("pneumonia", "viral pneumonia", "pneumothorax")
    assert match_option("findings suggest viral pneumonia", options, 0.5) == ("viral pneumonia", "contained")


def test_yes_no_questions_without_options_use_yes_and_no() -> None:
    records = Accuracy().score([
        closed("Yes, there is a fracture.", "yes"),
        closed("There is no evidence of pneumothorax", "no"),
        closed("Possibly.", "yes"),
    ])
    assert [r["accuracy"] for r in records] == [1.0, 1.0, 0.0]
    assert [r["parse_failure_rate"] for r in records] == [0.0, 0.0, 1.0]
    assert [r["_rule"] for r in records] == ["leading", "contained", "no_match"]


def test_unparseable_answers_are_wrong_and_counted() -> None:
    metric = Accuracy()
    records = metric.score([
        closed("MRI", "MRI", MODALITIES),
        closed("a photograph", "CT", MODALITIES),
        closed("It is a CT", "MRI", MODALITIES),
        closed("banana", "CT", MODALITIES),
    ])
    assert metric.aggregate("accuracy", records) == pytest.approx(1 / 4)
    assert metric.aggregate("parse_failure_rate", records) == pytest.approx(2 / 4)
    assert [r["_choice"] for r in records] == ["MRI", None, "CT", None]


def test_a_reference_outside_the_options_is_not_scored_as_closed_set() -> None:
    record = Accuracy().score([closed("CT", "PET", MODALITIES)])[0]
    assert record["accuracy"] is None and record["_rule"] == "reference_not_an_option"


def test_closed_question_without_options_is_normalised_exact_match() -> None:
    records = Accuracy().score([closed("Left.", "left"), closed("right lobe", "left")])
    assert [r["accuracy"] for r in records] == [1.0, 0.0]


def test_open_answers_get_exact_match_and_token_recall_not_accuracy() -> None:
    metric = Accuracy()
    records = metric.score([
        ScoreInput("1", "Right upper lobe.", ("right upper lobe",)),
        ScoreInput("2", "the right lobe of the liver", ("Right upper lobe", "right lobe")),
        ScoreInput("3", "", ("pleural effusion",)),
    ])
    assert [r["exact_match"] for r in records] == [1.0, 0.0, 0.0]
    # Best reference: {"right", "lobe"} is fully inside record 2's answer -> 1.0 (vs 2/3 for the first).
    assert [r["token_recall"] for r in records] == [1.0, 1.0, 0.0]
    assert all(r["accuracy"] is None for r in records)
    assert metric.aggregate("accuracy", records) is None


def test_min_similarity_comes_from_metric_arguments() -> None:
    metric = Accuracy.from_settings({"min_similarity": "0.99"})
    assert metric.config()["min_similarity"] == 0.99
    assert metric.score([closed("ultrasund", "Ultrasound", MODALITIES)])[0]["parse_failure_rate"] == 1.0
    with pytest.raises(UsageError, match="unknown argument 'threshold'"):
        Accuracy.from_settings({"threshold": "0.99"})
