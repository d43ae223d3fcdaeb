"""Readers for the file formats of RadFM's test sets (radfm-radbench.md section 4.2).

Each reader turns one CSV or JSON file into :class:`~radbench.types.Sample` objects, with the answer
built exactly as RadFM's dataset classes build it, and image references left lazy. Where RadFM draws
something at random per item (the prompt template, the image position, the yes/no branch), the
reader does not: it records the item's content and leaves prompt wording to the task.

Sample ids are ``{subset}-{split}-{row}``: stable for a given file, and the dataset manifest hash
says whether two runs read the same file content.
"""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from radbench.errors import UsageError
from radbench.types import ImageRef, Sample

YES_NO = ("yes", "no")
RATIONALE_SEPARATOR = "The Radiographic features can be summarized as follows."
YES_NO_TEMPLATE = "Does the image show signs of {disease}?"
MODALITY_QUESTION = "What modality is used to take this image?"


def read_csv_rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a CSV with ``required`` columns, numbered from 1 (the header is row 0)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise UsageError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(reader.fieldnames or [])})")
            yield from enumerate(reader, start=1)
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise UsageError(f"{path}: malformed CSV ({exc})") from None


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: malformed JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None


def npy_scans(path: str, root: str | None) -> int:
    """How many scans a RadFM ``(S, 3, H, W, D)`` file holds, read from its header only."""
    ref = ImageRef(path=path, kind="3d", root=root)
    from radbench.images import resolve

    try:
        arr = np.load(resolve(ref), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return 1  # unreadable: one reference, which fails per sample when the adapter loads it
    return int(arr.shape[0]) if arr.ndim == 5 else 1


def _closed(answer: str) -> tuple[str, tuple[str, ...]]:
    return ("closed", YES_NO) if answer.strip().lower() in YES_NO else ("open", ())


def _sample(subset: str, split: str, row: int, **fields: Any) -> Sample:
    return Sample(id=f"{subset}-{split}-{row:05d}", split=split, subset=subset, **fields)


def vqa_csv(path: Path, root: str | None, dataset: str, subset: str, split: str, task: str) -> list[Sample]:
    """``VQA_Dataset`` (PMC-VQA, VQA-RAD, SLAKE): ``img_root_dir``, ``Figure_path``, ``Question``, ``Answer``."""
    out = []
    for row, r in read_csv_rows(path, ("img_root_dir", "Figure_path", "Question", "Answer")):
        image = str(Path(r["img_root_dir"]) / r["Figure_path"]) if r["img_root_dir"] else r["Figure_path"]
        answer_type, options = _closed(r["Answer"])
        out.append(
            _sample(subset, split, row, dataset=dataset, task=task, question=r["Question"], references=(r["Answer"],),
                    images=(ImageRef(image, "2d", root),), answer_type=answer_type, options=options, study_id=image)
        )
    return out


def case_report_csv(path: Path, root: str | None, dataset: str, subset: str, split: str, task: str,
                    figure_dir: str = "") -> list[Sample]:
    """``CaseReport_dataset``: ``PMC_id``, ``img_ref`` (a list literal), ``context``, ``question``, ``answer``.

    RadFM shortens a context longer than five sentences to its first and last four; so does this reader.
    """
    out = []
    for row, r in read_csv_rows(path, ("PMC_id", "img_ref", "context", "question", "answer")):
        try:
            figures = ast.literal_eval(r["img_ref"])
        except (ValueError, SyntaxError):
            raise UsageError(f"{path}: row {row}: img_ref {r['img_ref']!r} is not a list literal") from None
        sentences = r["context"].split(".")
        context = r["context"] if len(sentences) <= 5 else sentences[0] + ". " + ". ".join(sentences[-4:])
        images = tuple(ImageRef(str(Path(figure_dir) / f"{r['PMC_id']}_{fig}.jpg"), "2d", root) for fig in figures)
        answer = r["answer"].replace("A:", "").strip()
        answer_type, options = _closed(answer)
        out.append(
            _sample(subset, split, row, dataset=dataset, task=task, context=context,
                    question=r["question"].replace("Q:", "").strip(), references=(answer,), images=images,
                    answer_type=answer_type, options=options, study_id=r["PMC_id"])
        )
    return out


def radio_vqa_csv(path: Path, root: str | None, dataset: str, subset: str, split: str, task: str) -> list[Sample]:
    """``RadioVQA_Dataset`` (Radiopaedia VQA): ``image_path`` (multi-scan ``.npy``), ``question``, ``answer``."""
    out = []
    for row, r in read_csv_rows(path, ("image_path", "question", "answer")):
        images = _scan_refs(r["image_path"], root)
        answer_type, options = _closed(r["answer"])
        out.append(
            _sample(subset, split, row, dataset=dataset, task=task, question=r["question"], references=(r["answer"],),
                    images=images, answer_type=answer_type, options=options, study_id=r["image_path"])
        )
    return out


def _scan_refs(path: str, root: str | None) -> tuple[ImageRef, ...]:
    if path.endswith(".npy"):
        return tuple(ImageRef(path, "3d", root, index=i) for i in range(npy_scans(path, root)))
    kind = "3d" if path.endswith((".nii", ".nii.gz")) else "2d"
    return (ImageRef(path, kind, root),)  # type: ignore[arg-type]


def chestxray_csv(path: Path, root: str | None, dataset: str, subset: str, split: str, task: str,
                  question: str = "") -> list[Sample]:
    """``ChestXray_Dataset`` (MIMIC-CXR reports, open diagnosis): ``image_path``, ``label`` verbatim."""
    return [
        _sample(subset, split, row, dataset=dataset, task=task, question=question, references=(r["label"],),
                images=(ImageRef(r["image_path"], "2d", root),), study_id=r["image_path"])
        for row, r in read_csv_rows(path, ("image_path", "label"))
    ]


def binary_csv(path: Path, root: str | None, dataset: str, subset: str, split: str, task: str) -> list[Sample]:
    """``Binary_Dataset`` (balanced yes/no diagnosis): ``image_path``, ``disease``, ``label`` (0/1)."""
    out = []
    for row, r in read_csv_rows(path, ("image_path", "disease", "label")):
        if r["label"] not in ("0", "1"):
            raise UsageError(f"{path}: row {row}: label must be 0 or 1, got {r['label']!r}")
        out.append(
            _sample(subset, split, row, dataset=dataset, task=task,
                    question=YES_NO_TEMPLATE.format(disease=r["disease"]),
                    references=(YES_NO[0] if r["label"] == "1" else YES_NO[1],),
                    images=(ImageRef(r["image_path"], "2d", root),), answer_type="closed", options=YES_NO,
                    study_id=r["image_path"], metadata={"disease": r["disease"]})
        )
    return out


def modality_csv(path: Path, root: str | None, dataset: str, subset: str, split: str, task: str,
                 modalities: tuple[str, ...] = ()) -> list[Sample]:
    """``Radio_Modality_Dataset``: ``image_path``, ``answer``; an open question over the modality set.

    RadFM also asks a yes/no variant whose "no" branch names the true modality (a label bug); the
    reader keeps only the open question, scored against the modality set as options.
    """
    out = []
    for row, r in read_csv_rows(path, ("image_path", "answer")):
        kind = "3d" if r["image_path"].endswith((".nii", ".nii.gz", ".npy")) else "2d"
        out.append(
            _sample(subset, split, row, dataset=dataset, task=task, question=MODALITY_QUESTION,
                    references=(r["answer"],), images=(ImageRef(r["image_path"], kind, root),),  # type: ignore[arg-type]
                    answer_type="closed", options=modalities, modality=r["answer"], study_id=r["image_path"])
        )
    return out


def article_json(path: Path, root: str | None, dataset: str, subset: str, split: str, task: str) -> list[Sample]:
    """``RadioCaption_Dataset`` / ``Radiofeatures_Dataset``: one JSON list read by two tasks.

    ``report``: ``'Finding: ' + finding + 'Impression: ' + impression`` (RadFM's construction, with no
    space before "Impression:"). ``rationale``: the article text, then RadFM's separator sentence,
    then the radiographic features. The history (``pat``, ``pre``) becomes the sample's context.
    """
    data = read_json(path)
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a JSON list of cases")
    need = ("pre", "pat", "npy_path") + (("finding", "impression") if task == "report" else ("radiographic_features", "articles", "title"))
    out = []
    for row, case in enumerate(data, start=1):
        missing = [k for k in need if not isinstance(case, dict) or k not in case]
        if missing:
            raise UsageError(f"{path}: case {row} lacks key(s) {', '.join(missing)}")
        if task == "report":
            reference = "Finding: " + str(case["finding"]) + "Impression: " + str(case["impression"])
        else:
            reference = " ".join(case["articles"]) + RATIONALE_SEPARATOR + " ".join(case["radiographic_features"])
        out.append(
            _sample(subset, split, row, dataset=dataset, task=task, context=f"{case['pat']} {case['pre']}".strip(),
                    references=(reference,), images=_scan_refs(case["npy_path"], root), study_id=case["npy_path"],
                    metadata={"title": case.get("title", ""), "features": list(case.get("radiographic_features", [])),
                              "articles": list(case.get("articles", []))})
        )
    return out


Reader = Callable[..., list[Sample]]
