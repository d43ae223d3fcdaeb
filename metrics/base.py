"""The metric interface: per-sample values first, one aggregation path for every metric.

A metric scores each (prediction, reference) pair once and returns, per sample, the values of its
metric ids plus any sufficient statistics its aggregate needs (corpus BLEU is not a mean of sentence
BLEU, so BLEU keeps its n-gram counts). :meth:`Metric.aggregate` turns any subset of those per-sample
records into one number; the bootstrap in :mod:`radbench.stats` calls it on resampled subsets, so the
confidence interval is always of the quantity actually reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Sequence

import numpy as np

from radbench.errors import UsageError


@dataclass(frozen=True)
class ScoreInput:
    """What a metric sees of one sample: never the model or the prompt."""

    id: str
    prediction: str
    references: tuple[str, ...]
    options: tuple[str, ...] = ()
    answer_type: str = "open"
    question: str = ""
    subset: str = ""
    # Structured parts of the reference a task-specific metric may need (rationale: ``title``,
    # ``features``, ``articles``); plain text metrics ignore it.
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class Metric:
    """Base class. Subclasses set ``group``, ``ids`` and ``version`` and implement :meth:`score`."""

    group: str = ""
    ids: tuple[str, ...] = ()
    version: str = "1"
    # Ids where a smaller value is better (error and failure rates); every other id is higher-is-better.
    lower_is_better: tuple[str, ...] = ()
    # Constructor keywords settable from the command line (``--metric-args group.key=value``), each
    # with the function that converts its string; :meth:`from_settings` applies them.
    SCHEMA: ClassVar[Mapping[str, Callable[[str], Any]]] = {}

    @classmethod
    def from_settings(cls, settings: Mapping[str, str] | None = None) -> Metric:
        """This metric built from its ``--metric-args`` strings, each converted by ``SCHEMA``.

        An unknown key or a value its converter refuses is a :class:`UsageError` naming ``group.key``.
        """
        if not settings:
            return cls()
        unknown = sorted(set(settings) - set(cls.SCHEMA))
        if unknown:
            raise UsageError(f"metric {cls.group!r}: unknown argument {unknown[0]!r}; "
                             f"valid: {', '.join(sorted(cls.SCHEMA))}")
        kwargs: dict[str, Any] = {}
        for key, raw in settings.items():
            try:
                kwargs[key] = cls.SCHEMA[key](raw)
            except ValueError as exc:
                raise UsageError(f"--metric-args {cls.group}.{key}: {exc}") from None
        return cls(**kwargs)

    def higher_is_better(self, metric_id: str) -> bool:
        """Direction of ``metric_id``: ``compare`` calls a rise of a lower-is-better metric a regression."""
        return metric_id not in self.lower_is_better

    def config(self) -> dict[str, Any]:
        """Everything that changes this metric's numbers; recorded next to every value it produces."""
        return {"version": self.version}

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        """Per-sample records: ``{metric_id: value, ...}`` (``None`` where undefined) plus statistics."""
        raise NotImplementedError

    def aggregate(self, metric_id: str, records: Sequence[dict[str, Any]]) -> float | None:
        """Default: the mean of the defined per-sample values (``None`` if none is defined)."""
        values = [r[metric_id] for r in records if r.get(metric_id) is not None]
        return float(np.mean(values)) if values else None

    def resampler(self, metric_id: str, records: Sequence[dict[str, Any]]) -> Callable[[np.ndarray], np.ndarray]:
        """``weights -> aggregate_many(metric_id, records, weights)``, for one set of records and many blocks.

        The bootstrap evaluates blocks of resamples one after another, so whatever depends only on the
        records is prepared here once. A subclass with its own ``aggregate_many`` gets exactly that.
        """
        if type(self).aggregate_many is not Metric.aggregate_many:
            return partial(self.aggregate_many, metric_id, records)
        values, defined = self._defined_values(metric_id, records)
        # Two matrix-vector products, as aggregate_many computes them: one matrix product of both
        # columns would sum in another order and move the interval's last bits.
        masked, counts = np.where(defined, values, 0.0), defined.astype(float)

        def many(weights: np.ndarray) -> np.ndarray:
            with np.errstate(invalid="ignore", divide="ignore"):
                return (weights @ masked) / (weights @ counts)

        return many

    @staticmethod
    def _defined_values(metric_id: str, records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        values = np.array([np.nan if r.get(metric_id) is None else float(r[metric_id]) for r in records])
        return values, ~np.isnan(values)

    def aggregate_many(self, metric_id: str, records: Sequence[dict[str, Any]], weights: np.ndarray) -> np.ndarray:
        """Aggregates of many resamples at once; ``weights[b, i]`` counts row ``i`` in resample ``b``.

        Default: the weighted mean of the defined per-sample values (``nan`` where none is defined).
        """
        values, defined = self._defined_values(metric_id, records)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ np.where(defined, values, 0.0)) / (weights @ defined.astype(float))
