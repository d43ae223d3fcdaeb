"""Rationale diagnosis: name the disease and give the radiographic features that support it.

The reference follows RadFM's construction: the case's article text, then "The Radiographic
features can be summarized as follows.", then the feature list.
"""

from __future__ import annotations

from radbench.tasks.base import Task
from radbench.tasks.templates import FAMILIES
from radbench.types import Sample

RATIONALE_PROMPT = FAMILIES["rationale"].own


class RationaleTask(Task):
    name = "rationale"
    version = "2"
    description = "Rationale diagnosis: the diagnosis and its radiographic features"
    default_dataset = "radbench"
    # Text overlap over the whole rationale rewards reproducing the article; the rationale metrics
    # read it as a radiologist would (diagnosis, features, side, polarity) and per part.
    # The diagnosis first: a rationale around the wrong disease is wrong, however well it reads.
    primary_metric = "diagnosis_hit"
    default_metrics = (
        "bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "bertscore_f1",
        "umls_precision", "umls_recall", "umls_f1",
        "diagnosis_hit", "diagnosis_hit_any", "feature_recall", "feature_precision",
        "laterality_error_rate", "negation_error_rate",
        "rationale_article_rougeL", "rationale_features_rougeL", "rationale_features_bleu4",
        "rationale_split_fallback_rate",
    )
    default_gen_kwargs = {"max_new_tokens": 200}

    def question(self, sample: Sample) -> str:
        return sample.question or RATIONALE_PROMPT
