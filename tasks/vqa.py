"""Visual question answering: the dataset's question, verbatim, about one or more images.

RadFM feeds VQA questions with no instruction wrapper and no answer options, and so does radbench.
Closed questions (yes/no, or with options) are also scored by accuracy; open ones by text overlap.
"""

from __future__ import annotations

from radbench.tasks.base import Task


class VQATask(Task):
    name = "vqa"
    version = "2"
    description = "Visual question answering on 2D and 3D studies (open and closed questions)"
    default_dataset = "radbench"
    # Answers are mostly a word or two: closed questions by accuracy, open ones by exact match and
    # token recall plus text overlap. BERTScore and UMLS (RadFM also reported them for VQA) are one
    # --metrics away; they mean little on one-word answers.
    default_metrics = ("bleu1", "bleu2", "bleu3", "bleu4", "rouge1", "rouge2", "rougeL", "accuracy", "exact_match",
                       "token_recall", "parse_failure_rate")
    default_gen_kwargs = {"max_new_tokens": 64}
