"""The data model every stage shares: samples, lazy image references, requests, predictions.

These are plain dataclasses so each arrow of the flow (reader -> task -> adapter -> store -> metric)
is a function call on plain data. Nothing here loads pixels: an :class:`ImageRef` only says where an
image is and how to read it; :mod:`radbench.images` reads it when an adapter asks.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ImageKind = Literal["2d", "3d"]
# A rationale reference is the article text, this sentence, then the radiographic features: the
# datasets write it and the rationale metric splits on it, so it belongs to the data model.
RATIONALE_SEPARATOR = "The Radiographic features can be summarized as follows."
AnswerType = Literal["open", "closed"]


def stable_hash(obj: Any) -> str:
    """SHA-256 of a canonical JSON encoding: the same content gives the same hash on any machine."""
    data = json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ImageRef:
    """Where one image or volume lives, and how to read it; never the pixels.

    ``path`` is relative to ``root`` unless absolute, or a ``pkg:`` URI naming a file that an
    installed package ships (``pkg:pydicom/CT_small.dcm``). ``index`` selects one scan inside a
    multi-scan file (RadFM's ``.npy`` holds ``(S, 3, H, W, D)``). ``loader`` is ``auto`` (by suffix)
    or a name registered in :mod:`radbench.images`. ``window`` is an intensity window applied when
    the image is read (``lung``, ``-600,1500``, ``dicom``; see :func:`radbench.images.parse_window`);
    it changes what a model sees, so it is part of the reference's identity. A relative path must
    stay inside ``root`` unless ``allow_outside_root`` (the user's ``--allow-outside-root``).
    """

    path: str
    kind: ImageKind = "2d"
    root: str | None = None
    index: int | None = None
    loader: str = "auto"
    window: str | None = None
    allow_outside_root: bool = False

    def ref_id(self) -> str:
        """A machine-independent identity: the path as written in the dataset, plus the scan index."""
        return self.path if self.index is None else f"{self.path}#{self.index}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.index is not None:
            out["index"] = self.index
        if self.loader != "auto":
            out["loader"] = self.loader
        if self.window is not None:
            out["window"] = self.window
        return out


@dataclass(frozen=True)
class Sample:
    """One evaluation item as a dataset reader produces it, before any prompt exists.

    ``id`` is stable across runs and machines (derived from the dataset's own row identity), so
    predictions, scores and paired comparisons can be joined on it. ``subset`` names the source file
    or benchmark inside a dataset (RadFM's ``belong_to``); results are also broken down by it.
    """

    id: str
    dataset: str
    task: str
    references: tuple[str, ...]
    question: str = ""
    context: str = ""
    images: tuple[ImageRef, ...] = ()
    options: tuple[str, ...] = ()
    answer_type: AnswerType = "open"
    modality: str | None = None
    study_id: str | None = None
    patient_id: str | None = None
    split: str = "test"
    subset: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def reference(self) -> str:
        """The primary reference answer (datasets with several keep the rest in ``references``)."""
        return self.references[0] if self.references else ""

    @property
    def cluster_id(self) -> str:
        """The unit a bootstrap resamples: questions about one patient or study are not independent."""
        return self.patient_id or self.study_id or self.id

    def content(self) -> dict[str, Any]:
        """What identifies this sample's content, for dataset manifest hashes."""
        return {
            "id": self.id,
            "question": self.question,
            "context": self.context,
            "references": list(self.references),
            "options": list(self.options),
            "images": [i.to_json() for i in self.images],
            "answer_type": self.answer_type,
        }


@dataclass(frozen=True)
class Segment:
    """One piece of an interleaved prompt: either text or one image."""

    text: str | None = None
    image: ImageRef | None = None

    def to_json(self) -> dict[str, Any]:
        if self.image is not None:
            return {"image": self.image.to_json()}
        return {"text": self.text or ""}


@dataclass(frozen=True)
class Turn:
    """A question with its images, and the answer for a few-shot exemplar (``None`` for the query)."""

    segments: tuple[Segment, ...]
    answer: str | None = None
    sample_id: str = ""

    @property
    def images(self) -> list[ImageRef]:
        return [s.image for s in self.segments if s.image is not None]

    def text(self, image_placeholder: str = "<image>") -> str:
        return "".join(image_placeholder if s.image is not None else (s.text or "") for s in self.segments)


@dataclass(frozen=True)
class Request:
    """A sample rendered for one model: exemplar turns, then the query turn, plus decoding settings.

    Requests are model-neutral; each adapter turns the turns into its own prompt format (Flamingo's
    ``<image>...<|endofchunk|>``, RadFM's 32-token image blocks, LLaVA's ``[INST]``).
    """

    sample_id: str
    turns: tuple[Turn, ...]
    gen_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    task: str = ""
    dataset: str = ""
    subset: str = ""
    options: tuple[str, ...] = ()

    @property
    def query(self) -> Turn:
        return self.turns[-1]

    @property
    def exemplars(self) -> tuple[Turn, ...]:
        return self.turns[:-1]

    @property
    def exemplar_ids(self) -> list[str]:
        return [t.sample_id for t in self.exemplars]

    @property
    def images(self) -> list[ImageRef]:
        return [img for t in self.turns for img in t.images]

    def to_json(self) -> dict[str, Any]:
        return {
            "turns": [
                {"segments": [s.to_json() for s in t.segments], "answer": t.answer, "sample_id": t.sample_id}
                for t in self.turns
            ],
            "gen_kwargs": self.gen_kwargs,
            "options": list(self.options),
        }

    def prompt_hash(self) -> str:
        """Hash of everything the model sees (text, image references, exemplars, decoding settings)."""
        return stable_hash(self.to_json())


@dataclass
class Prediction:
    """One line of ``predictions.jsonl``: what a model produced for one sample, and how.

    Nothing time-dependent goes here (timings live in ``timings.jsonl``), so identical runs write
    byte-identical prediction logs, however they were interrupted, resumed or sharded.
    """

    id: str
    key: str
    prediction: str
    prompt: str
    prompt_hash: str
    images: list[dict[str, Any]]
    exemplar_ids: list[str]
    gen_kwargs: dict[str, Any]
    model_fingerprint: str
    error: str | None = None
    # The sample's per-sample choices and structured reference parts (prompt template and image
    # positions chosen, source file and row, rationale title/features), so a rescore or an audit of
    # predictions.jsonl needs nothing else.
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# How spreadsheets and pandas spell an empty cell; as an identifier each would join unrelated rows.
MISSING_IDS = {"", "nan", "none", "null", "na", "n/a", "<na>", "nat"}


def identifier(value: Any) -> str | None:
    """A patient or study id, or None when the field is empty or spells a missing value.

    A ``NaN`` (a JSON number, or pandas' ``"nan"`` in a CSV) is no id: taken as text, every row
    missing one would share the bootstrap cluster ``"nan"``; as None the sample falls back to its
    study or sample id, as a row without the column does.
    """
    if value is None or (isinstance(value, float) and value != value):
        return None
    out = (value if isinstance(value, str) else str(value)).strip()
    return None if out.lower() in MISSING_IDS else out
