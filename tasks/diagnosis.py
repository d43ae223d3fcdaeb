"""Closed-set diagnosis: yes/no disease questions and modality recognition, scored by accuracy."""

from __future__ import annotations

from radbench.tasks.base import Task


class DiagnosisTask(Task):
    name = "diagnosis"
    version = "1"
    description = "Closed-set diagnosis: balanced yes/no disease questions and modality recognition"
    default_dataset = "radbench"
    default_metrics = ("accuracy",)
    default_gen_kwargs = {"max_new_tokens": 16}
