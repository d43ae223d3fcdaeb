"""Closed-set diagnosis: yes/no disease questions and modality recognition, scored by accuracy.

The public X-ray sets (chestxray, pcxr, mammo, spinexr) also carry RadFM's open diagnosis files,
scored by normalised exact match against the label.
"""

from __future__ import annotations

from radbench.tasks.base import Task


class DiagnosisTask(Task):
    name = "diagnosis"
    version = "2"
    description = "Closed-set diagnosis: balanced yes/no disease questions and modality recognition"
    default_dataset = "radbench"
    default_metrics = ("accuracy",)
    primary_metric = "accuracy"
    default_gen_kwargs = {"max_new_tokens": 16}
