"""VQA-RAD as its authors released it on OSF: ``VQA_RAD Dataset Public.json`` + ``VQA_RAD Image Folder/``.

The JSON is a list of question records (``qid``, ``image_name``, ``question``, ``answer``,
``answer_type`` OPEN/CLOSED, ``question_type``, ``phrase_type``, ``image_organ``, ...). There is no
separate test file: the test questions are those whose ``phrase_type`` is ``test_freeform`` or
``test_para``; every other record (``freeform``, ``para``, ``frame``) is training data. Answers may
be JSON numbers; they are read as text. The published ``answer_type`` decides closed vs open.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from radbench.errors import UsageError
from radbench.tasks.datasets.common import Source, text
from radbench.tasks.datasets.formats import Format, checked_records, find_named, load_json
from radbench.tasks.datasets.radfm_files import YES_NO, clean_answer
from radbench.types import Sample

JSON_NAME = "VQA_RAD Dataset Public.json"
IMAGE_FOLDER = "VQA_RAD Image Folder"
TEST_PHRASES = ("test_freeform", "test_para")
REQUIRED = ("image_name", "question", "answer", "answer_type", "phrase_type")


def find(root: Path) -> Path | None:
    return find_named(root, JSON_NAME)


def read(found: Path, src: Source) -> list[Sample]:
    records = load_json(found)
    if not isinstance(records, list):
        raise UsageError(f"{found}: expected a JSON list of question records, got {type(records).__name__}")
    src = replace(src, image_root=str(found.parent / IMAGE_FOLDER))
    out = []
    for number, record in checked_records(records, src, REQUIRED, "answer", out):
        is_test = text(record["phrase_type"]).strip() in TEST_PHRASES
        if is_test != (src.split == "test"):
            continue  # the other split's question
        answer = clean_answer(text(record["answer"]).strip())
        kind = text(record["answer_type"]).strip().upper()
        if kind not in ("OPEN", "CLOSED"):
            out.append(src.broken(number, f"answer_type must be OPEN or CLOSED, got {record['answer_type']!r}", answer))
            continue
        closed = kind == "CLOSED"
        options = YES_NO if closed and answer.lower() in YES_NO else ()
        image = text(record["image_name"]).strip()
        out.append(src.sample(number, question=text(record["question"]), references=(answer,),
                              images=(src.image(image, "2d"),), answer_type="closed" if closed else "open",
                              options=options, study_id=image,
                              metadata={"qid": text(record.get("qid")), "question_type": text(record.get("question_type")),
                                        "phrase_type": text(record["phrase_type"]), "organ": text(record.get("image_organ"))}))
    return out


def files(found: Path, split: str) -> list[Path]:
    return [found]


FORMAT = Format("vqa-rad-osf", f"{JSON_NAME!r} + {IMAGE_FOLDER!r} (the OSF release)", find, read, files)
