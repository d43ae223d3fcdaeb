"""SLAKE as its authors release it: ``Slake1.0/{train,validate,test}.json`` + ``Slake1.0/imgs/``.

Each JSON file is a list of question records: ``img_name`` (``xmlab102/source.jpg``, relative to
``imgs/``), ``question``, ``answer``, ``q_lang`` (``en`` or ``zh``), ``answer_type`` (OPEN/CLOSED),
``content_type``, ``location``, ``modality``, ``qid``, ``img_id``, ... Questions come in both
languages; a reader keeps one language (English by default, ``slake-zh`` for Chinese), and the row
numbers stay those of the file. The Hub copy (``BoKelvin/SLAKE``) has the same files at its top level
with ``imgs.zip`` (unpacked by :mod:`radbench.hub`) and ``validate.json`` renamed ``validation.json``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from radbench.errors import UsageError
from radbench.tasks.datasets.common import Source, text
from radbench.tasks.datasets.formats import Format, checked_records, load_json
from radbench.tasks.datasets.radfm_files import YES_NO, clean_answer
from radbench.types import Sample

FILES = {"test": ("test.json",), "train": ("train.json",), "validate": ("validate.json", "validation.json")}
REQUIRED = ("img_name", "question", "answer", "q_lang", "answer_type")


def find(root: Path) -> Path | None:
    folders = [root, root / "Slake1.0", *sorted(p for p in root.iterdir() if p.is_dir() and p.name != "Slake1.0")]
    for folder in folders:
        if (folder / "test.json").is_file() and (folder / "imgs").is_dir():
            return folder / "test.json"
    return None


def files(found: Path, split: str) -> list[Path]:
    return [p for p in (found.parent / n for n in FILES[split]) if p.is_file()][:1]


def reader(language: str):  # type: ignore[no-untyped-def]
    def read(found: Path, src: Source) -> list[Sample]:
        paths = files(found, src.split)
        if not paths:
            raise UsageError(f"{found.parent}: no {src.split} file (looked for {', '.join(FILES[src.split])})")
        path = paths[0]
        records = load_json(path)
        if not isinstance(records, list):
            raise UsageError(f"{path}: expected a JSON list of question records, got {type(records).__name__}")
        file_src = replace(src, path=path, image_root=str(found.parent / "imgs"))
        out = []
        for number, record in checked_records(records, file_src, REQUIRED, "answer", out):
            if text(record["q_lang"]).strip() != language:
                continue  # a question in the other language
            answer = clean_answer(text(record["answer"]).strip())
            kind = text(record["answer_type"]).strip().upper()
            if kind not in ("OPEN", "CLOSED"):
                out.append(file_src.broken(number, f"answer_type must be OPEN or CLOSED, got {record['answer_type']!r}", answer))
                continue
            closed = kind == "CLOSED"
            image = text(record["img_name"]).strip()
            out.append(file_src.sample(
                number, question=text(record["question"]), references=(answer,), images=(file_src.image(image, "2d"),),
                answer_type="closed" if closed else "open", options=YES_NO if closed and answer.lower() in YES_NO else (),
                modality=text(record.get("modality")) or None, study_id=image,
                metadata={"qid": text(record.get("qid")), "content_type": text(record.get("content_type")),
                          "location": text(record.get("location")), "q_lang": language}))
        return out

    return read


LOOKS_FOR = "Slake1.0/test.json + Slake1.0/imgs/ (the authors' release)"
FORMAT = Format("slake-json", LOOKS_FOR, find, reader("en"), files)
FORMAT_ZH = Format("slake-json", LOOKS_FOR, find, reader("zh"), files)
