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
    # token recall, plus BLEU-1 for comparison with RadFM's tables. BLEU-2..4 and ROUGE-2 are about 0
    # on one- and two-word answers: they add near-constant metrics that only weaken the Holm
    # correction of `radbench compare`. They, ROUGE, BERTScore and UMLS are one --metrics away.
    default_metrics = ("accuracy", "exact_match", "token_recall", "parse_failure_rate", "bleu1")
    primary_metric = "accuracy"
    default_gen_kwargs = {"max_new_tokens": 64}
