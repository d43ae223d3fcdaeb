"""radbench/labels.py: a concept or BERTScore number's label names its source, from the recorded config alone."""

from __future__ import annotations

import pytest

from radbench import labels
from radbench.metrics.bertscore import BertScore
from radbench.metrics.rationale import Rationale
from radbench.metrics.umls import Umls


def test_labels_from_the_metrics_own_configurations() -> None:
    umls, rationale, bertscore = Umls().config(), Rationale().config(), BertScore().config()
    assert labels.metric_label("umls_precision", umls) == "UMLS P · HPO index"
    assert labels.metric_label("umls_neg_recall", umls) == "UMLS-neg R · HPO index"
    assert Umls().source_label == umls["source_label"] == labels.source(umls).text
    assert labels.metric_label("feature_recall", rationale) == "feature_recall · HPO index"
    assert labels.metric_label("bertscore_f1", bertscore) == "BERTScore F1 · all-MiniLM-L6-v2, layer 6"
    assert labels.metric_label("bleu4", {"version": "1", "ids": ["bleu4"]}) == "bleu4"
    assert labels.metric_label("umls_f1", None) == "UMLS F1"


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"encoder": "/models/RadBERT", "num_layers": 9, "idf": False, "rescale_with_baseline": False},
         "RadBERT, layer 9"),
        ({"encoder": "/models/RadBERT/", "num_layers": 4, "idf": True, "rescale_with_baseline": True},
         "RadBERT, layer 4, idf, rescaled"),
        ({"source_label": "scispaCy UMLS (entities)", "backend": "scispacy"}, "scispaCy UMLS (entities)"),
        ({"concepts": {"source_label": "QuickUMLS index"}}, "QuickUMLS index"),
    ],
)
def test_source_of_other_encoders_and_backends(config: dict, expected: str) -> None:
    assert labels.source(config).text == expected


def test_describe_sources_lists_only_groups_with_one() -> None:
    configs = {"bleu": {"version": "1", "ids": ["bleu1"]}, "umls": {"source_label": "HPO index", "ids": ["umls_f1"]},
               "bertscore": {"encoder": "/m/enc", "num_layers": 3, "ids": ["bertscore_f1"]}}
    assert labels.describe_sources(configs) == "bertscore encoder: enc, layer 3; umls source: HPO index"
    assert labels.describe_sources(configs, ["bleu", "umls"]) == "umls source: HPO index"
    assert labels.metric_labels(["umls_f1", "bleu1", "other"], configs) == {
        "umls_f1": "UMLS F1 · HPO index", "bleu1": "bleu1", "other": "other"}
