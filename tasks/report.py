"""Report generation: findings and impression for a study, given the patient's history.

The question is the case's history (``pat``/``pre`` in RadFM's files) followed by a request for a
report: radbench's own, or one of RadFM's templates read from the user's copy of RadFM's prompt files
(faithful mode, :mod:`radbench.tasks.templates`); radbench never ships RadFM's files.
"""

from __future__ import annotations

from radbench.tasks.base import Task
from radbench.tasks.templates import FAMILIES
from radbench.types import Sample

REPORT_PROMPT = FAMILIES["report-scans"].own


class ReportTask(Task):
    name = "report"
    version = "2"
    description = "Radiology report generation (findings and impression)"
    default_dataset = "radbench"
    # RadFM's report metrics (BLEU, ROUGE, BERTScore, UMLS concept precision/recall), and first the
    # negation-aware concept F1: "No pneumothorax." for "Pneumothorax." shares every word and the
    # concept but not the finding, and only the (concept, negated) pairs tell them apart.
    # docs/results.md, "Primary metrics", says why not BLEU or BERTScore.
    primary_metric = "umls_neg_f1"
    default_metrics = ("umls_neg_f1", "bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL",
                       "bertscore_f1", "umls_precision", "umls_recall", "umls_f1")
    default_gen_kwargs = {"max_new_tokens": 200}

    def question(self, sample: Sample) -> str:
        return sample.question or REPORT_PROMPT
