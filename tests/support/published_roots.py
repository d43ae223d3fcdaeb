"""Tiny data roots in exactly the layouts the publishers ship (docs/data.md says where each was checked).

Every builder writes a few questions or studies for the test split and the train split, with small
PNG/JPEG images made with PIL, and returns the root to pass as ``--data-root``. The wording of the
questions and reports is made up.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def image(path: Path, seed: int, fmt: str = "PNG", size: int = 20) -> bytes:
    """A small random RGB image written to ``path`` (and returned as bytes)."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(buf, format=fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(buf.getvalue().encode("utf-8")))
    else:
        path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    return path


def vqa_rad_osf(root: Path) -> Path:
    """``VQA_RAD Dataset Public.json`` + ``VQA_RAD Image Folder/`` (OSF); test = phrase_type test_*."""
    folder = root / "VQA_RAD Image Folder"
    for i in range(1, 4):
        image(folder / f"synpic{i}.jpg", i, "JPEG")
    rows = [
        (1, "synpic1.jpg", "Is there a fracture?", "yes", "CLOSED", "test_freeform"),
        (2, "synpic1.jpg", "Is a fracture present?", "Yes", "CLOSED", "test_para"),
        (3, "synpic2.jpg", "Which organ is shown?", "liver", "OPEN", "test_freeform"),
        (4, "synpic2.jpg", "What organ is this?", "liver", "OPEN", "freeform"),
        (5, "synpic3.jpg", "Is the lung clear?", "no", "CLOSED", "para"),
        (6, "synpic3.jpg", "How many ribs are seen?", 12, "OPEN", "frame"),
    ]
    records = [{"qid": q, "phrase_type": p, "qid_linked_id": f"link{q}", "image_case_url": "https://example.org/case",
                "image_name": img, "image_organ": "CHEST", "evaluation": "given", "question": qu,
                "question_rephrase": "NULL", "question_relation": "NULL", "question_frame": "NULL",
                "question_type": "PRES", "answer": a, "answer_type": t} for q, img, qu, a, t, p in rows]
    write_json(root / "VQA_RAD Dataset Public.json", records)
    return root


def vqa_rad_parquet(root: Path) -> Path:
    """The Hub release: ``data/{test,train}-00000-of-00001-<hash>.parquet`` with image/question/answer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    scratch = root / ".scratch"
    pngs = [image(scratch / f"{i}.png", 10 + i) for i in range(3)]
    jpg = image(scratch / "j.jpg", 20, "JPEG")
    splits = {
        "test": [(pngs[0], "synpic1.jpg", "is there a fracture?", "yes"), (pngs[0], "synpic1.jpg", "where is the lesion?", "left lobe"),
                 (jpg, None, "is the heart enlarged?", "no")],
        "train": [(pngs[1], "synpic7.jpg", "is this a ct?", "yes"), (pngs[2], "synpic8.jpg", "what organ?", "kidney")],
    }
    for split, rows in splits.items():
        table = pa.table({
            "image": [{"bytes": b, "path": p} for b, p, _, _ in rows],
            "question": [q for _, _, q, _ in rows],
            "answer": [a for _, _, _, a in rows],
        })
        (root / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(table, root / "data" / f"{split}-00000-of-00001-0123456789abcdef.parquet")
    for f in scratch.iterdir():
        f.unlink()
    scratch.rmdir()
    return root


def slake(root: Path) -> Path:
    """``Slake1.0/{train,validate,test}.json`` + ``Slake1.0/imgs/xmlabN/source.jpg``, questions in en and zh."""
    base = root / "Slake1.0"
    for i in (1, 2, 3):
        image(base / "imgs" / f"xmlab{i}" / "source.jpg", 30 + i, "JPEG")

    def record(qid: int, img: int, question: str, answer: str, lang: str, kind: str) -> dict:
        return {"img_id": img, "img_name": f"xmlab{img}/source.jpg", "question": question, "answer": answer,
                "q_lang": lang, "location": "Lung", "modality": "CT", "answer_type": kind, "base_type": "vqa",
                "content_type": "Organ", "triple": ["vhead", "_", "_"], "qid": qid}

    write_json(base / "test.json", [
        record(1, 1, "Does the picture contain lung?", "Yes", "en", "CLOSED"),
        record(2, 1, "图片中包含肺吗?", "是", "zh", "CLOSED"),
        record(3, 2, "Which organ is abnormal?", "Left Lung", "en", "OPEN"),
    ])
    write_json(base / "train.json", [record(4, 3, "What modality is this?", "CT", "en", "OPEN"),
                                     record(5, 3, "这是什么模态?", "CT", "zh", "OPEN")])
    write_json(base / "validate.json", [record(6, 3, "Is this a CT?", "Yes", "en", "CLOSED")])
    return root


def pmc_vqa(root: Path) -> Path:
    """``test_clean.csv`` / ``test.csv`` / ``train.csv`` + ``images/`` (xmcmic/PMC-VQA)."""
    for i in (1, 2, 3):
        image(root / "images" / f"PMC100{i}_F1.jpg", 40 + i, "JPEG")
    header = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]
    test = [["PMC1001_F1.jpg", "What is the uptake pattern?", "Focal uptake pattern", "A:Diffuse uptake pattern",
             "B:Focal uptake pattern", "C:No uptake pattern", "D:Cannot determine", "B"],
            ["PMC1002_F1.jpg", "Which imaging modality is used?", "MRI", "A:CT", "B:X-ray", "C:MRI", "D:Ultrasound", "C"]]
    write_csv(root / "test_clean.csv", header, test)
    write_csv(root / "test.csv", header, test + [["PMC1003_F1.jpg", "Where is the mass?", "Liver", "A:Liver", "B:Lung",
                                                  "C:Brain", "D:Kidney", "A"]])
    write_csv(root / "train.csv", header, [["PMC1003_F1.jpg", "Where is the mass?", "Liver", "A:Liver", "B:Lung",
                                            "C:Brain", "D:Kidney", "A"]])
    return root


REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  Cough.

 FINDINGS:
 
 The lungs are clear.  No pleural effusion
 or pneumothorax.

 IMPRESSION:
 
 No acute cardiopulmonary process.
"""


def mimic_cxr_jpg(root: Path) -> Path:
    """MIMIC-CXR-JPG: split/metadata CSVs (gzip), ``files/pXX/pSUBJECT/sSTUDY/DICOM.jpg``, reports in
    ``mimic-cxr-reports/files/pXX/pSUBJECT/sSTUDY.txt``."""
    studies = [  # subject, study, split, [(dicom, view)]
        ("10000032", "50414267", "test", [("d-pa-1", "PA"), ("d-lat-1", "LATERAL")]),
        ("10000032", "53189527", "test", [("d-ap-2", "AP")]),
        ("10000764", "57375967", "test", [("d-lat-3", "LL")]),  # no frontal view: not in the frontal set
        ("10000898", "50771383", "train", [("d-pa-4", "PA")]),
    ]
    split_rows, meta_rows = [], []
    for n, (subject, study, split, images) in enumerate(studies):
        for dicom, view in images:
            split_rows.append([dicom, study, subject, split])
            meta_rows.append([dicom, subject, study, "CHEST (PA AND LAT)", view, 20, 20, "21800506", "213014.531", "antero-posterior", view, "Erect"])
            image(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg", 50 + n, "JPEG")
        report = root / "mimic-cxr-reports" / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(REPORT if n != 1 else " FINAL REPORT\n IMPRESSION:  Low lung volumes.\n", encoding="utf-8")
    write_csv(root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split_rows)
    write_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz",
              ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
               "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
               "PatientOrientationCodeSequence_CodeMeaning"], meta_rows)
    return root


def r2gen(root: Path, dataset: str = "iu_xray") -> Path:
    """R2Gen's ``annotation.json`` ({train, val, test}) + ``images/``, for ``iu_xray`` or ``mimic_cxr``."""
    base = root / dataset
    if dataset == "iu_xray":
        ids = {"train": ["CXR2384_IM-0942"], "val": ["CXR2056_IM-0694"], "test": ["CXR1000_IM-0003", "CXR1001_IM-0004"]}
        paths = lambda i: [f"{i}/0.png", f"{i}/1.png"]  # noqa: E731
    else:
        ids = {"train": ["p10/p10000032/s50414267"], "val": ["p10/p10000764/s57375967"], "test": ["p10/p10000898/s50771383"]}
        paths = lambda i: [f"{i}/dicom-{i[-3:]}.jpg"]  # noqa: E731
    data: dict[str, list] = {}
    seed = 60
    for split, names in ids.items():
        data[split] = []
        for name in names:
            for p in paths(name):
                seed += 1
                image(base / "images" / p, seed)
            record = {"id": name.split("/")[-1], "report": f"The heart size is normal. Study {name}.", "image_path": paths(name),
                      "split": split}
            if dataset == "mimic_cxr":
                record.update({"study_id": int(name.split("/s")[-1]), "subject_id": int(name.split("/p")[-1].split("/")[0])})
            data[split].append(record)
    write_json(base / "annotation.json", data)
    return root
