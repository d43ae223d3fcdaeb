"""PMC-VQA as its authors release it: ``test_clean.csv`` / ``test.csv`` / ``train.csv`` + ``images/``.

Columns (dataset card of ``xmcmic/PMC-VQA``): ``Figure_path`` (a file name in ``images/``, the
unpacked ``images.zip``; the CSV's own folder if there is no ``images/``), ``Question``, ``Answer`` (spelled ``Anwser`` in the first card), ``Choice A``
... ``Choice D`` (each prefixed ``A:`` ... ``D:``) and ``Answer_label`` (the letter). Every question is
closed: the four choices are the options, the reference is the chosen option's text, and the
question is asked with its choices, as the authors' MedVInT evaluation does. The test file is
``test_clean.csv`` (the manually checked set the authors report on) when present, else ``test.csv``;
point ``--data-root`` at a folder holding only ``test.csv`` to evaluate the full test set.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from radbench.errors import UsageError
from radbench.tasks.datasets.common import Row, Source, read_rows, text
from radbench.tasks.datasets.formats import Format
from radbench.tasks.datasets.radfm_files import clean_answer
from radbench.types import Sample

FILES = {"test": ("test_clean.csv", "test.csv"), "train": ("train.csv",)}
LETTERS = ("A", "B", "C", "D")
REQUIRED = ("Figure_path", "Question", "Answer_label") + tuple(f"Choice {x}" for x in LETTERS)


def find(root: Path) -> Path | None:
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        for name in FILES["test"]:
            if (folder / name).is_file():
                return folder / name
    return None


def files(found: Path, split: str) -> list[Path]:
    if split == "test":
        return [found]
    return [p for p in (found.parent / n for n in FILES[split]) if p.is_file()][:1]


def _choice(value: str, letter: str) -> str:
    value = value.strip()
    return value[2:].strip() if value[:2].upper() == f"{letter}:" else value


def build(src: Source, row: Row) -> Sample:
    v = row.values
    label = text(v["Answer_label"]).strip().upper()
    if label not in LETTERS:
        raise ValueError(f"Answer_label must be one of A, B, C, D, got {text(v['Answer_label'])!r}")
    raw = [text(v[f"Choice {x}"]) for x in LETTERS]
    options = tuple(clean_answer(_choice(c, x)) for c, x in zip(raw, LETTERS))
    question = text(v["Question"]).strip() + "\n" + "\n".join(c.strip() for c in raw)
    figure = text(v["Figure_path"]).strip()
    answer = text(v.get("Answer", v.get("Anwser", "")))
    return src.sample(row.number, question=question, references=(options[LETTERS.index(label)],),
                      images=(src.image(figure, "2d"),), options=options, answer_type="closed", study_id=figure,
                      metadata={"answer_label": label, "answer": answer, "question_only": text(v["Question"])})


def read(found: Path, src: Source) -> list[Sample]:
    paths = files(found, src.split)
    if not paths:
        raise UsageError(f"{found.parent}: no {src.split} file (looked for {', '.join(FILES[src.split])})")
    images = found.parent / "images"
    file_src = replace(src, path=paths[0], image_root=str(images if images.is_dir() else found.parent))
    out = []
    for row in read_rows(paths[0], REQUIRED):
        problem = row.problem
        if problem is None:
            try:
                out.append(build(file_src, row))
                continue
            except ValueError as exc:
                problem = str(exc)
        out.append(file_src.broken(row.number, problem))
    return out


FORMAT = Format("pmc-vqa-csv", "test_clean.csv or test.csv + images/ (the authors' release)", find, read, files)
