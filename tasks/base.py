"""Tasks turn samples into model-neutral requests, and say how their answers are scored.

A task is declarative: a name, a version (bumped whenever rendering or scoring changes, so results
of different versions never get compared), a default dataset, default metrics and decoding settings,
and one prompt builder. Few-shot exemplars come from the dataset's exemplar split through a seeded,
per-sample sampler, so adding or removing a sample never changes another sample's exemplars.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Protocol, Sequence

from radbench.errors import UsageError
from radbench.types import ImageRef, Request, Sample, Segment, Turn, stable_hash


class Dataset(Protocol):
    """What a dataset reader provides; registered under ``radbench.datasets``."""

    name: str
    tasks: tuple[str, ...]
    description: str
    is_demo: bool

    def load(self, task: str, split: str, data_root: str | None) -> list[Sample]:
        """The samples of ``task`` in ``split`` (``test``, or ``train`` for few-shot exemplars)."""
        ...


@dataclass
class Task:
    """Base class for the built-in tasks; subclasses set the class attributes and maybe ``question``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    default_dataset: ClassVar[str] = "radbench"
    default_metrics: ClassVar[tuple[str, ...]] = ()
    default_gen_kwargs: ClassVar[dict[str, Any]] = {}
    gen_kwargs: dict[str, Any] = field(default_factory=dict)

    def question(self, sample: Sample) -> str:
        """The text that asks for this task's answer; VQA uses the dataset's question verbatim."""
        return sample.question

    def query_segments(self, sample: Sample) -> tuple[Segment, ...]:
        """Images first, then the text: one fixed, documented position for every image.

        RadFM's loaders put each image at the start or the end of the question at random; a fixed
        position makes prompts reproducible, and ``start`` is what the RadFM demo and Flamingo use.
        """
        text = " ".join(part for part in (sample.context.strip(), self.question(sample).strip()) if part)
        return tuple(Segment(image=img) for img in sample.images) + (Segment(text=text),)

    def render(self, sample: Sample, exemplars: Sequence[Sample] = ()) -> Request:
        turns = tuple(
            Turn(self.query_segments(ex), answer=ex.reference, sample_id=ex.id) for ex in exemplars
        ) + (Turn(self.query_segments(sample), sample_id=sample.id),)
        return Request(
            sample_id=sample.id,
            turns=turns,
            gen_kwargs={**self.default_gen_kwargs, **self.gen_kwargs},
            task=self.name,
            dataset=sample.dataset,
            subset=sample.subset,
            options=sample.options,
        )

    def render_exemplar(self, sample: Sample) -> Request:
        """An exemplar as a one-turn request whose turn carries its answer (what baselines learn from)."""
        request = self.render(sample)
        answered = Turn(request.query.segments, answer=sample.reference, sample_id=sample.id)
        return replace(request, turns=(answered,))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "gen_kwargs": {**self.default_gen_kwargs, **self.gen_kwargs}}


def select_exemplars(sample: Sample, pool: Sequence[Sample], shots: int, seed: int) -> list[Sample]:
    """``shots`` exemplars for ``sample``, drawn from ``pool`` with a per-sample seeded RNG.

    Exemplars never share the sample's id, study or patient (that would leak the answer), and come
    from the sample's own dataset when it has enough of them.
    """
    if shots <= 0:
        return []
    candidates = [
        ex
        for ex in pool
        if ex.id != sample.id
        and not (sample.study_id and ex.study_id == sample.study_id)
        and not (sample.patient_id and ex.patient_id == sample.patient_id)
    ]
    same = [ex for ex in candidates if ex.dataset == sample.dataset]
    if len(same) >= shots:
        candidates = same
    if len(candidates) < shots:
        raise UsageError(
            f"--shots {shots}: the exemplar split has only {len(candidates)} usable exemplars for {sample.id}"
        )
    rng = random.Random(stable_hash([seed, sample.id]))
    ordered = sorted(candidates, key=lambda ex: ex.id)
    return rng.sample(ordered, shots)


def image_refs(paths: Sequence[str], kind: str, root: str | None) -> tuple[ImageRef, ...]:
    return tuple(ImageRef(path=p, kind=kind, root=root) for p in paths)  # type: ignore[arg-type]
