"""MIMIC-CXR as PhysioNet publishes it: MIMIC-CXR-JPG images and CSVs, plus the free-text reports.

Layout (PhysioNet ``mimic-cxr-jpg`` 2.x and ``mimic-cxr`` 2.x):

- ``mimic-cxr-2.0.0-split.csv.gz``: ``dicom_id, study_id, subject_id, split`` (train/validate/test);
- ``mimic-cxr-2.0.0-metadata.csv.gz``: per image, among others ``dicom_id`` and ``ViewPosition``;
- ``files/pXX/pSUBJECT/sSTUDY/DICOM.jpg`` (``XX``: the subject id's first two digits);
- reports ``files/pXX/pSUBJECT/sSTUDY.txt`` (``mimic-cxr-reports.zip``), looked up under
  ``mimic-cxr-reports/``, ``reports/`` and the data root itself.

One sample per study of the split, with the study's frontal images (``ViewPosition`` PA or AP) in
file order; a study without a frontal image is not part of the frontal set. The reference is the
report's FINDINGS and IMPRESSION sections, found as MIMIC-CXR's own tooling (``section_parser``)
finds sections: an upper-case heading ending in a colon starts a section, which runs to the next
heading; the last section of a name wins; whitespace is collapsed. A report with neither section
is a failed sample naming the file, never an empty reference.
"""

from __future__ import annotations

import csv
import gzip
import zlib
import re
from dataclasses import replace
from pathlib import Path
from typing import Iterator

from radbench.errors import UsageError
from radbench.tasks.datasets.common import Source
from radbench.tasks.datasets.formats import Format
from radbench.types import Sample

SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"
METADATA_CSV = "mimic-cxr-2.0.0-metadata.csv.gz"
SPLIT_NAMES = {"test": "test", "train": "train"}
FRONTAL = ("PA", "AP")
REPORT_ROOTS = ("mimic-cxr-reports", "reports", "")
_HEADING = re.compile(r"(?m)^[ \t]*([A-Z][A-Z &/,()-]*[A-Z)])[ \t]*:")
FINDINGS = ("findings", "finding")
IMPRESSION = ("impression", "impressions", "conclusion", "conclusions")


def sections(report: str) -> dict[str, str]:
    """``{lower-case heading: text}`` of a MIMIC-CXR report (the last section of a name wins)."""
    found = list(_HEADING.finditer(report))
    out: dict[str, str] = {}
    for i, match in enumerate(found):
        end = found[i + 1].start() if i + 1 < len(found) else len(report)
        out[" ".join(match.group(1).lower().split())] = " ".join(report[match.end():end].split())
    return out


def findings_impression(report: str) -> tuple[str, str]:
    parts = sections(report)
    pick = lambda names: next((parts[n] for n in reversed(list(parts)) if n in names), "")  # noqa: E731
    return pick(FINDINGS), pick(IMPRESSION)


def reference(findings: str, impression: str) -> str:
    return " ".join(p for p in (f"Findings: {findings}" if findings else "", f"Impression: {impression}" if impression else "") if p)


def find(root: Path) -> Path | None:
    path = root / SPLIT_CSV
    return path if path.is_file() and (root / METADATA_CSV).is_file() else None


def files(found: Path, split: str) -> list[Path]:
    return [found, found.parent / METADATA_CSV]


def _rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise UsageError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(header) or 'no header'})")
            for number, row in enumerate(reader, start=1):
                # PhysioNet's tables are whole files; a short row means the file is damaged, not one study
                if any(row.get(c) is None for c in required):
                    raise UsageError(f"{path}: row {number}: missing field(s) "
                                     f"{', '.join(c for c in required if row.get(c) is None)}")
                yield number, row
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, zlib.error) as exc:
        raise UsageError(f"{path}: not a readable gzip CSV ({' '.join(str(exc).split())[:200]})") from None


def _report(root: Path, subject: str, study: str) -> Path | None:
    for folder in REPORT_ROOTS:
        path = (root / folder if folder else root) / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
        if path.is_file():
            return path
    return None


def read(found: Path, src: Source) -> list[Sample]:
    root = found.parent
    views = {row["dicom_id"]: row["ViewPosition"].strip().upper()
             for _, row in _rows(root / METADATA_CSV, ("dicom_id", "ViewPosition"))}
    studies: dict[str, dict] = {}
    for number, row in _rows(found, ("dicom_id", "study_id", "subject_id", "split")):
        if row["split"].strip() != SPLIT_NAMES[src.split]:
            continue
        study = studies.setdefault(row["study_id"].strip(), {"row": number, "subject": row["subject_id"].strip(), "images": [],
                                                            "unknown": []})
        dicom = row["dicom_id"].strip()
        if dicom not in views:
            study["unknown"].append(dicom)
        elif views[dicom] in FRONTAL:
            study["images"].append(dicom)
    src = replace(src, image_root=str(root))
    out = []
    for study_id, study in studies.items():
        number, subject = study["row"], study["subject"]
        if study["unknown"]:
            out.append(src.broken(number, f"study {study_id}: image(s) {', '.join(study['unknown'])} not in {METADATA_CSV}"))
            continue
        if not study["images"]:
            continue  # no frontal view: not part of the frontal report-generation set
        if not (subject.isdigit() and study_id.isdigit()):
            out.append(src.broken(number, f"subject_id {subject!r} / study_id {study_id!r} must be numbers"))
            continue
        report_path = _report(root, subject, study_id)
        if report_path is None:
            out.append(src.broken(number, f"study {study_id}: report files/p{subject[:2]}/p{subject}/s{study_id}.txt not found "
                                          f"under {', '.join(f or '.' for f in REPORT_ROOTS)}"))
            continue
        try:
            text = report_path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            out.append(src.broken(number, f"{report_path}: unreadable report ({exc})"))
            continue
        findings, impression = findings_impression(text)
        if not findings and not impression:
            out.append(src.broken(number, f"{report_path}: report has neither a FINDINGS nor an IMPRESSION section"))
            continue
        folder = f"files/p{subject[:2]}/p{subject}/s{study_id}"
        out.append(src.sample(number, references=(reference(findings, impression),),
                              images=tuple(src.image(f"{folder}/{d}.jpg", "2d") for d in study["images"]),
                              study_id=study_id, patient_id=subject,
                              metadata={"findings": findings, "impression": impression, "report": str(report_path.name)}))
    return out


FORMAT = Format("mimic-cxr-jpg", f"{SPLIT_CSV} + {METADATA_CSV} + files/ (PhysioNet's MIMIC-CXR-JPG)", find, read, files)
