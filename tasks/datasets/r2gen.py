"""Report-generation sets in R2Gen's packaging: ``annotation.json`` + ``images/`` (IU X-ray, MIMIC-CXR).

R2Gen (Chen et al., EMNLP 2020) distributes IU X-ray and MIMIC-CXR as one ``annotation.json``,
``{"train": [...], "val": [...], "test": [...]}``, each record holding ``id``, ``report`` (the
reference), ``image_path`` (a list of paths relative to ``images/``: IU X-ray's two views
``CXR2384_IM-0942/0.png``, MIMIC-CXR's ``p10/p10000032/s5.../<dicom>.jpg``) and ``split``; MIMIC-CXR
records add ``study_id`` and ``subject_id``. Most report-generation papers evaluate on this split.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from radbench.errors import UsageError
from radbench.tasks.datasets.common import Source, text
from radbench.tasks.datasets.formats import Format, checked_records, find_named, load_json
from radbench.tasks.datasets.radfm_files import clean_answer
from radbench.types import Sample, identifier

NAME = "annotation.json"
KEYS = {"test": "test", "train": "train"}
REQUIRED = ("id", "report", "image_path")


def find(root: Path) -> Path | None:
    return find_named(root, NAME)


def files(found: Path, split: str) -> list[Path]:
    return [found]


def read(found: Path, src: Source) -> list[Sample]:
    data = load_json(found)
    key = KEYS[src.split]
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise UsageError(f"{found}: expected {{\"train\": [...], \"val\": [...], \"test\": [...]}} with a {key!r} list")
    src = replace(src, image_root=str(found.parent / "images"))
    out = []
    for number, record in checked_records(data[key], src, REQUIRED, "report", out, lambda n: f"{key}[{n - 1}]: "):
        where = f"{key}[{number - 1}]"
        paths = record["image_path"]
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p.strip() for p in paths):
            out.append(src.broken(number, f"{where}: image_path must be a non-empty list of paths", text(record["report"])))
            continue
        study = identifier(record.get("study_id")) or text(record["id"])
        out.append(src.sample(number, references=(clean_answer(text(record["report"]).strip()),),
                              images=tuple(src.image(p, "2d") for p in paths), study_id=study,
                              patient_id=identifier(record.get("subject_id")),
                              metadata={"r2gen_id": text(record["id"])}))
    return out


FORMAT = Format("r2gen", "annotation.json + images/ (R2Gen's release)", find, read, files)
