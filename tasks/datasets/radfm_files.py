"""Readers for the file formats of RadFM's test sets.

Each reader turns one CSV or JSON file into :class:`~radbench.types.Sample` objects, with the answer
built exactly as RadFM's dataset classes build it (including removing ``•``, as RadFM's
``text_add_image`` does), and image references left lazy: no pixel is read here. Prompt wording
and image positions are not a reader's business: :mod:`radbench.tasks.templates` plans them.

Where RadFM draws a task variant at random per item (the yes/no branch of its rationale and
modality sets), the readers split the variants into separate tasks instead: rationale items go to
``rationale``, the yes/no disease questions to ``diagnosis`` (both branches, so the set is balanced),
and modality items keep only the open question (RadFM's yes/no "no" branch names the true
modality, a label bug).

Sample ids are ``{subset}-{split}-{row}``: stable for a given file; the dataset manifest hash says
whether two runs read the same content.
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from radbench import safe_io
from radbench.errors import SampleError, UsageError
from radbench.tasks.datasets.common import Row, Source, read_rows, text
from radbench.types import RATIONALE_SEPARATOR, ImageKind, ImageRef, Sample, stable_hash

YES_NO = ("yes", "no")
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".npy", ".mha", ".mhd", ".nrrd")


def read_csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Every row of a CSV as ``(number, fields)``, for readers that need the whole file intact
    (``radbench score`` on RadFM's output CSV): the first bad row is a one-line UsageError."""
    for row in read_rows(path, required):
        if row.problem is not None:
            raise UsageError(f"{path}: row {row.number}: {row.problem}")
        yield row.number, {k: text(v) for k, v in row.values.items()}


def clean_answer(answer: str) -> str:
    """RadFM removes every bullet from answers before training and testing."""
    return answer.replace("•", "")


def kind_of(path: str) -> ImageKind:
    """3D for volume formats and series folders (a path ending in ``/``), else 2D."""
    return "3d" if path.lower().endswith(VOLUME_SUFFIXES) or path.endswith("/") else "2d"


def npy_scans(ref: ImageRef) -> int:
    """How many scans a RadFM ``(S, 3, H, W, D)`` file holds, from its header only."""
    from radbench.images.paths import resolve

    try:
        arr = np.load(resolve(ref), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, SampleError):
        return 1  # unusable: one reference, which fails per sample when an adapter loads it
    return int(arr.shape[0]) if arr.ndim == 5 else 1


def scan_refs(src: Source, path: str) -> tuple[ImageRef, ...]:
    """One reference per scan of a case: RadFM's ``.npy`` files hold all scans of a case."""
    if path.endswith(".npy"):
        first = src.image(path, "3d", index=0)
        return tuple(src.image(path, "3d", index=i) for i in range(npy_scans(first)))
    return (src.image(path, kind_of(path)),)


def _closed(answer: str) -> dict[str, Any]:
    if answer.strip().lower() in YES_NO:
        return {"answer_type": "closed", "options": YES_NO}
    return {"answer_type": "open", "options": ()}


class RowError(ValueError):
    """A row whose fields exist but cannot be interpreted (a reader's own validation)."""


def _rows(src: Source, required: tuple[str, ...], build: Callable[[Row], Sample | list[Sample]],
          reference_key: str | None = None) -> list[Sample]:
    """Apply ``build`` to every good row; a bad row (or one ``build`` rejects) becomes a failed sample."""
    out: list[Sample] = []
    for row in read_rows(src.path, required):
        problem = row.problem
        if problem is None:
            try:
                built = build(row)
            except RowError as exc:
                problem = str(exc)
            else:
                out.extend(built if isinstance(built, list) else [built])
                continue
        reference = clean_answer(text(row.values.get(reference_key))) if reference_key else ""
        out.append(src.broken(row.number, problem, reference))
    return out


def vqa_csv(src: Source) -> list[Sample]:
    """``VQA_Dataset`` (PMC-VQA, VQA-RAD, SLAKE): ``img_root_dir``, ``Figure_path``, ``Question``, ``Answer``."""

    def build(row: Row) -> Sample:
        v = row.values
        image = posixpath.join(text(v["img_root_dir"]), text(v["Figure_path"])) if text(v["img_root_dir"]) else text(v["Figure_path"])
        answer = clean_answer(text(v["Answer"]))
        return src.sample(row.number, question=text(v["Question"]), references=(answer,),
                          images=(src.image(image, "2d"),), study_id=image, **_closed(answer))

    return _rows(src, ("img_root_dir", "Figure_path", "Question", "Answer"), build, "Answer")


def truncate_context(context: str) -> str:
    """RadFM's CaseReport rule: more than five '.'-pieces keep the first and the last four."""
    sentences = context.split(".")
    return context if len(sentences) <= 5 else sentences[0] + ". " + ". ".join(sentences[-4:])


def case_report_csv(src: Source, figure_dir: str = "figures") -> list[Sample]:
    """``CaseReport_dataset``: ``PMC_id``, ``img_ref`` (a list literal), ``context``, ``question``, ``answer``.

    Figures are ``{figure_dir}/{PMC_id}_{figure}.jpg`` (RadFM's naming); the context is shortened
    as RadFM does, and ``Q:``/``A:`` prefixes are removed as RadFM does.
    """

    def build(row: Row) -> Sample:
        v = row.values
        try:
            figures = safe_io.literal_eval(text(v["img_ref"]))
        except safe_io.UnsafeInput as exc:
            raise RowError(f"img_ref {text(v['img_ref'])[:60]!r}: {exc}") from None
        except (ValueError, SyntaxError):
            raise RowError(f"img_ref {text(v['img_ref'])[:60]!r} is not a list literal") from None
        if not isinstance(figures, (list, tuple)):
            raise RowError(f"img_ref {text(v['img_ref'])!r} is not a list")
        pmc = text(v["PMC_id"])
        images = tuple(src.image(posixpath.join(figure_dir, f"{pmc}_{fig}.jpg"), "2d") for fig in figures)
        answer = clean_answer(text(v["answer"]).replace("A:", "")).strip()
        return src.sample(row.number, context=truncate_context(text(v["context"])),
                          question=text(v["question"]).replace("Q:", ""), references=(answer,), images=images,
                          study_id=pmc, **_closed(answer))

    return _rows(src, ("PMC_id", "img_ref", "context", "question", "answer"), build, "answer")


def radio_vqa_csv(src: Source) -> list[Sample]:
    """``RadioVQA_Dataset`` (Radiopaedia VQA): ``image_path`` (multi-scan ``.npy``), ``question``, ``answer``."""

    def build(row: Row) -> Sample:
        v = row.values
        answer = clean_answer(text(v["answer"]))
        return src.sample(row.number, question=text(v["question"]), references=(answer,),
                          images=scan_refs(src, text(v["image_path"])), study_id=text(v["image_path"]), **_closed(answer))

    return _rows(src, ("image_path", "question", "answer"), build, "answer")


def chestxray_csv(src: Source) -> list[Sample]:
    """``ChestXray_Dataset`` (MIMIC-CXR reports, open diagnosis): ``image_path``, ``label`` verbatim."""

    def build(row: Row) -> Sample:
        v = row.values
        return src.sample(row.number, references=(clean_answer(text(v["label"])),),
                          images=(src.image(text(v["image_path"]), "2d"),), study_id=text(v["image_path"]))

    return _rows(src, ("image_path", "label"), build, "label")


def binary_csv(src: Source) -> list[Sample]:
    """``Binary_Dataset`` (balanced yes/no diagnosis): ``image_path``, ``disease``, ``label`` (0/1)."""

    def build(row: Row) -> Sample:
        v = row.values
        label = text(v["label"]).strip()
        try:
            value = float(label)
        except ValueError:
            value = -1.0
        if value not in (0.0, 1.0):
            raise RowError(f"label must be 0 or 1, got {label!r}")
        return src.sample(row.number, references=("yes" if value == 1.0 else "no",),
                          images=(src.image(text(v["image_path"]), "2d"),), answer_type="closed", options=YES_NO,
                          study_id=text(v["image_path"]), metadata={"target": text(v["disease"])})

    return _rows(src, ("image_path", "disease", "label"), build)


def modality_csv(src: Source, modalities: Sequence[str] = ()) -> list[Sample]:
    """``Radio_Modality_Dataset``: ``image_path``, ``answer``; an open question over the modality set."""

    def build(row: Row) -> Sample:
        v = row.values
        path, answer = text(v["image_path"]), clean_answer(text(v["answer"]))
        return src.sample(row.number, references=(answer,), images=(src.image(path, kind_of(path)),),
                          answer_type="closed", options=tuple(modalities), modality=answer, study_id=path)

    return _rows(src, ("image_path", "answer"), build, "answer")


ARTICLE_KEYS = ("pre", "pat", "npy_path")


def _history(case: dict[str, Any]) -> dict[str, Any]:
    pat, pre = text(case["pat"]), text(case["pre"])
    return {"context": f"{pat} {pre}".strip(), "metadata": {"pat": pat, "pre": pre}}


def article_report(src: Source) -> list[Sample]:
    """``RadioCaption_Dataset``: ``'Finding: ' + finding + 'Impression: ' + impression`` (RadFM's
    construction, with no space before "Impression:"); the history (``pat``, ``pre``) is the context."""

    def build(row: Row) -> Sample:
        case = row.values
        reference = "Finding: " + text(case["finding"]) + "Impression: " + text(case["impression"])
        hist = _history(case)
        return src.sample(row.number, references=(clean_answer(reference),), images=scan_refs(src, text(case["npy_path"])),
                          study_id=text(case["npy_path"]), context=hist["context"], metadata=hist["metadata"])

    return _rows(src, ARTICLE_KEYS + ("finding", "impression"), build)


def _strings(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RowError(f"{key} must be a list of strings")
    return value


def article_rationale(src: Source) -> list[Sample]:
    """``Radiofeatures_Dataset`` (rationale branch): the article text, RadFM's separator sentence,
    then the radiographic features; the title and features stay structured for rationale metrics."""

    def build(row: Row) -> Sample:
        case = row.values
        articles = _strings(case["articles"], "articles")
        features = _strings(case["radiographic_features"], "radiographic_features")
        reference = " ".join(articles) + RATIONALE_SEPARATOR + " ".join(features)
        hist = _history(case)
        return src.sample(row.number, references=(clean_answer(reference),), images=scan_refs(src, text(case["npy_path"])),
                          study_id=text(case["npy_path"]), context=hist["context"],
                          metadata={**hist["metadata"], "title": text(case["title"]), "features": features,
                                    "articles": articles})

    return _rows(src, ARTICLE_KEYS + ("radiographic_features", "articles", "title"), build)


def article_yes_no(src: Source, titles: Sequence[str]) -> list[Sample]:
    """``Radiofeatures_Dataset`` (yes/no branch), both answers per case so the set is balanced.

    "yes" asks about the case's own title; "no" about another article title (``titles``: the keys
    of RadFM's ``articles_resave.json``), picked by a hash of the case, so the set never depends on
    the seed. The two questions share the case's study id: exemplars and the bootstrap keep them together.
    """
    pool = sorted(set(titles))

    def build(row: Row) -> list[Sample]:
        case = row.values
        title = text(case["title"])
        others = [t for t in pool if t.strip().lower() != title.strip().lower()]
        if not title.strip() or not others:
            raise RowError("needs a title, and another article title for the 'no' question")
        other = others[int(stable_hash(["radbench-no-title", row.number, title]), 16) % len(others)]
        images = scan_refs(src, text(case["npy_path"]))
        common = {"images": images, "study_id": text(case["npy_path"]), "answer_type": "closed", "options": YES_NO}
        return [
            src.sample(row.number, "-yes", references=("yes",), metadata={"target": title}, **common),
            src.sample(row.number, "-no", references=("no",), metadata={"target": other}, **common),
        ]

    return _rows(src, ("npy_path", "title"), build)


Reader = Callable[..., list[Sample]]
