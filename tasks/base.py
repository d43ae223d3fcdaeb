"""Tasks turn samples into model-neutral requests, and say how their answers are scored.

A task is declarative: a name, a version (bumped whenever rendering or scoring changes, so results
of different versions never get compared), a default dataset, default metrics and decoding settings,
and one prompt builder. Few-shot exemplars come from the dataset's exemplar split through a seeded,
per-sample sampler, so adding or removing a sample never changes another sample's exemplars.
"""

from __future__ import annotations

import inspect
import random
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Protocol, Sequence

from radbench.errors import UsageError
from radbench.images.windows import parse_window
from radbench.types import ImageRef, Request, Sample, Segment, Turn, stable_hash


@dataclass(frozen=True)
class DataOptions:
    """How to read a dataset: the user's data location, path rewrites, prompt files, strictness.

    One object, so :meth:`Dataset.load` keeps one signature as options are added. ``image_roots``
    holds ``(OLD, NEW)`` prefix rewrites (``--image-root OLD=NEW``) for the absolute paths published
    files carry; ``prompts`` is a folder of RadFM prompt files, or ``radbench`` to use radbench's
    own templates even when RadFM's files are found; ``seed`` picks RadFM templates and image
    positions per sample in faithful mode. ``max_images`` caps the images of one sample
    (``--max-images N``, 0 for no cap); ``None`` keeps the dataset's own default (8 for the
    RadFM-format datasets, as RadFM's loader; none for the others).
    """

    data_root: str | None = None
    image_roots: tuple[tuple[str, str], ...] = ()
    prompts: str | None = None
    strict: bool = False
    allow_outside_root: bool = False
    window: str | None = None
    seed: int = 0
    max_images: int | None = None

    def __post_init__(self) -> None:
        parse_window(self.window)  # a bad --window is a usage error before anything is read
        if self.max_images is not None and self.max_images < 0:
            raise UsageError(f"--max-images must be >= 0 (0: no cap), got {self.max_images}")

    def image_cap(self, dataset_default: int | None) -> int | None:
        """The cap in force: ``--max-images`` if given (0 lifts it), else the dataset's default."""
        if self.max_images is None:
            return dataset_default
        return self.max_images or None

    @staticmethod
    def parse_image_roots(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
        """``OLD=NEW`` strings to pairs; a malformed one is a one-line error naming it."""
        out = []
        for item in items:
            old, sep, new = item.partition("=")
            if not sep or not old.strip() or not new.strip():
                raise UsageError(f"--image-root {item!r}: expected OLD=NEW (a path prefix in the dataset files = a local folder)")
            out.append((old.strip(), new.strip()))
        return tuple(out)

    def non_default(self) -> list[str]:
        """Options other than ``data_root`` and ``seed`` that differ from their defaults."""
        return [f.name for f in fields(self) if f.name not in ("data_root", "seed") and getattr(self, f.name) != f.default]


class Dataset(Protocol):
    """What a dataset reader provides; registered under ``radbench.datasets``.

    ``load`` may omit ``options`` (the original three-argument form): such a dataset only supports
    ``--data-root``, and :func:`load_split` refuses the other data options for it instead of
    silently ignoring them.
    """

    name: str
    tasks: tuple[str, ...]
    description: str
    is_demo: bool

    def load(self, task: str, split: str, data_root: str | None, options: DataOptions | None = None) -> list[Sample]:
        """The samples of ``task`` in ``split`` (``test``, or ``train`` for few-shot exemplars)."""
        ...


def load_split(dataset: Dataset, task: str, split: str, options: DataOptions) -> list[Sample]:
    """Call ``dataset.load`` with the options when it accepts them (plugins may predate them)."""
    params = inspect.signature(dataset.load).parameters
    if "options" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dataset.load(task, split, options.data_root, options=options)
    unsupported = options.non_default()
    if unsupported:
        names = ", ".join("--" + n.replace("_", "-") for n in unsupported)
        raise UsageError(f"dataset {getattr(dataset, 'name', '?')!r} does not support {names}")
    return dataset.load(task, split, options.data_root)


def cap_images(sample: Sample, limit: int | None, seed: int) -> Sample:
    """``sample`` with at most ``limit`` images: a subset drawn per sample from the run seed, in file order.

    RadFM's loader keeps ``random.sample(images, 8)`` of a case with more images, a fresh draw (and
    order) every epoch. radbench draws the same subset for the same seed and sample on every machine,
    keeps the images in their original order, and records the kept indices in
    ``metadata["images_capped"]`` so every prediction shows what the model saw.
    """
    if limit is None or len(sample.images) <= limit or failed_row(sample) is not None:
        return sample
    rng = random.Random(f"radbench-max-images:{seed}:{sample.id}")
    kept = sorted(rng.sample(range(len(sample.images)), limit))
    metadata = {**sample.metadata, "images_capped": {"kept": kept, "of": len(sample.images)}}
    prompt = metadata.get("prompt")
    if isinstance(prompt, dict) and len(prompt.get("image_positions", ())) == len(sample.images):
        metadata["prompt"] = {**prompt, "image_positions": [prompt["image_positions"][i] for i in kept]}
    return replace(sample, images=tuple(sample.images[i] for i in kept), metadata=metadata)


def failed_row(sample: Sample) -> str | None:
    """The reader's error for a sample whose row could not be read (it is never sent to a model)."""
    return sample.metadata.get("error")


def interleave(text: str, images: Sequence[ImageRef], positions: Sequence[int]) -> tuple[Segment, ...]:
    """Place each image by a RadFM position (0 or a character count) in ``text``.

    RadFM inserts an image *before* the character at ``max(position - 1, 0)``, so the position
    ``len(text)`` lands before the last character ("...chest scan<image>?"); images sharing a place
    keep their order. radbench reproduces this exactly; its own prompts use position 0 (images first).
    """
    slots: dict[int, list[ImageRef]] = {}
    for image, position in zip(images, positions):
        slots.setdefault(min(max(position - 1, 0), max(len(text) - 1, 0)), []).append(image)
    segments: list[Segment] = []
    start = 0
    for loc in sorted(slots):
        if text[start:loc]:
            segments.append(Segment(text=text[start:loc]))
        segments.extend(Segment(image=image) for image in slots[loc])
        start = loc
    if text[start:]:
        segments.append(Segment(text=text[start:]))
    return tuple(segments)


@dataclass
class Task:
    """Base class for the built-in tasks; subclasses set the class attributes and maybe ``question``."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    default_dataset: ClassVar[str] = "radbench"
    default_metrics: ClassVar[tuple[str, ...]] = ()
    # The one number a leaderboard ranks by and shows first; one of ``default_metrics``. Chosen per
    # task for what a clinician would ask of it (docs/results.md, "Primary metrics"), not for which
    # number happens to be largest. Empty: the first default metric.
    primary_metric: ClassVar[str] = ""
    default_gen_kwargs: ClassVar[dict[str, Any]] = {}
    gen_kwargs: dict[str, Any] = field(default_factory=dict)

    def question(self, sample: Sample) -> str:
        """The text that asks for this task's answer; VQA uses the dataset's question verbatim."""
        return sample.question

    def query_segments(self, sample: Sample) -> tuple[Segment, ...]:
        """The sample's prompt, as planned when its dataset was read, or images first, then text.

        Built-in datasets plan every sample's prompt (:mod:`radbench.tasks.templates`): the text and
        each image's position, from RadFM's prompt files in faithful mode or radbench's own
        templates. A dataset that plans nothing gets its context and question after its images:
        one fixed position, which is what the RadFM demo and Flamingo use.
        """
        plan = sample.metadata.get("prompt")
        if plan:
            return interleave(plan["text"], sample.images, plan["image_positions"])
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
        and failed_row(ex) is None
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
