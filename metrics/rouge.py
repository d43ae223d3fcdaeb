"""ROUGE-1, ROUGE-2 and ROUGE-L F-measure with the Porter stemmer, averaged over samples.

This is RadEval's convention: ``rouge_score.RougeScorer(["rouge1", "rouge2", "rougeL"],
use_stemmer=True)``, the F-measure of each pair, then the mean. With several references a sample
takes its best reference (rouge-score's ``score_multi``).
"""

from __future__ import annotations

from typing import Any, Sequence

from radbench.metrics.base import Metric, ScoreInput


class Rouge(Metric):
    group = "rouge"
    ids = ("rouge1", "rouge2", "rougeL")
    version = "1"

    def __init__(self) -> None:
        from rouge_score import rouge_scorer

        self._scorer = rouge_scorer.RougeScorer(list(self.ids), use_stemmer=True)

    def config(self) -> dict[str, Any]:
        import importlib.metadata

        return {
            "version": self.version,
            "implementation": f"rouge-score {importlib.metadata.version('rouge-score')}",
            "use_stemmer": True,
            "measure": "fmeasure",
            "level": "mean of per-sample",
            "multi_reference": "max",
        }

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        out = []
        for item in items:
            refs = list(item.references) or [""]
            scores = self._scorer.score_multi(refs, item.prediction)
            out.append({metric_id: float(scores[metric_id].fmeasure) for metric_id in self.ids})
        return out
