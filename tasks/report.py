"""Report generation: findings and impression for a study, given the patient's history.

The question is the case's history (``pat``/``pre`` in RadFM's files, kept in ``context``) followed by
radbench's own request for a report. RadFM's own prompt lists can be loaded from the user's copy of
their files by the data issue's readers; radbench never ships them.
"""

from __future__ import annotations

from radbench.tasks.base import Task
from radbench.types import Sample

REPORT_PROMPT = "Describe the findings and the impression of this study."


class ReportTask(Task):
    name = "report"
    version = "1"
    description = "Radiology report generation (findings and impression)"
    default_dataset = "radbench"
    default_metrics = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL")
    default_gen_kwargs = {"max_new_tokens": 200}

    def question(self, sample: Sample) -> str:
        return sample.question or REPORT_PROMPT
