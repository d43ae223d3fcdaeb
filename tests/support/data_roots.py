"""Fixture data roots in RadFM's published formats, generated per test (small arrays, a few rows).

Image paths follow the published files' habits: the Radiopaedia files carry the authors' absolute
paths (under :data:`AUTHORS`, remapped with ``--image-root``), the public sets relative ones, and
some files use the other spellings RadFM's README and Hugging Face card give (``PMC_VQA_test.csv``,
``VQA_RAD_test.csv``) inside a ``data_csv/`` sub-folder, as the unzipped archive has them.

Prompt files are radbench test fixtures in RadFM's JSON layout with made-up wording, never RadFM's.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

AUTHORS = "/gpfs/authors/radiopaedia"

FAKE_PROMPTS: dict[str, dict[str, list[str]]] = {
    "yes_no_prompt.json": {"caption_prompt": ["Fixture: is disease seen?", "Fixture: any disease here?",
                                              "Fixture: does disease show up?"]},
    "cls_prompt.json": {"caption_prompt": ["Fixture chest diagnosis A?", "Fixture chest diagnosis B?"]},
    "mammo_prompt.json": {"caption_prompt": ["Fixture mammo diagnosis?"]},
    "spinexr_prompt.json": {"caption_prompt": ["Fixture spine diagnosis?"]},
    "report_prompt.json": {"caption_prompt": ["Fixture: write the report.", "Fixture: report please."]},
    "caption_prompt.json": {"caption_prompt": ["Fixture caption one?", "Fixture caption two?", "Fixture caption three?"]},
    "radiology_feature_prompt.json": {"caption_prompt": ["Fixture rationale one?", "Fixture rationale two?"]},
    "modality_prompt.json": {"caption_prompt": ["Fixture modality?", "Fixture which modality?"],
                             "modality_prompt": ["Fixture: is it modality?"]},
}


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False), encoding="utf-8")
    return path


def png(path: Path, seed: int, size: int = 24) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
    return path.name


def npy_case(path: Path, scans: int, seed: int, depth: int = 4) -> None:
    """A RadFM Radiopaedia case: every scan of it in one ``(S, 3, H, W, D)`` array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    np.save(path, rng.random((scans, 3, 16, 16, depth), dtype=np.float32) * (seed + 1))


def write_prompts(folder: Path) -> Path:
    for name, data in FAKE_PROMPTS.items():
        write_json(folder / name, data)
    return folder


def build_radfm_root(root: Path) -> Path:
    """Every file the registered RadFM datasets read, test and train, with readable images."""
    csvs = root / "data_csv"
    img = root / "images"
    for i in range(1, 9):
        png(img / f"xr{i}.png", i)
    # Radiopaedia (radbench): absolute authors' paths, to be remapped to root/radiopaedia.
    local = root / "radiopaedia"
    for case, scans in (("c1", 2), ("c2", 1), ("c3", 1), ("t1", 1), ("t2", 2), ("t3", 1)):
        npy_case(local / "npy" / f"{case}.npy", scans, seed=len(case) + scans + ord(case[-1]))
    vqa_header = ["image_path", "question", "answer"]
    write_csv(csvs / "radiology_vqa_test.csv", vqa_header, [
        [f"{AUTHORS}/npy/c1.npy", "How many nodules?", "two •"],
        [f"{AUTHORS}/npy/c1.npy", "Is there an effusion?", "no"],
        [f"{AUTHORS}/npy/c2.npy", "Which lobe?", "left upper"],
    ])
    write_csv(csvs / "radiology_vqa_train.csv", vqa_header, [
        [f"{AUTHORS}/npy/t1.npy", "How many nodules?", "one"],
        [f"{AUTHORS}/npy/t2.npy", "Is there an effusion?", "yes"],
        [f"{AUTHORS}/npy/t3.npy", "Which lobe?", "right lower"],
    ])

    def case(npy: str, title: str, n: int) -> dict[str, Any]:
        return {"pre": f"Presentation {n}.", "pat": f"Patient {n}.", "npy_path": f"{AUTHORS}/npy/{npy}.npy",
                "finding": f"Finding {n}.", "impression": f"Impression {n}.", "title": title,
                "articles": [f"{title} is a disease."], "radiographic_features": [f"Feature {n}a.", f"Feature {n}b."]}

    write_json(csvs / "radiology_article_npy_test.json", [case("c1", "Pneumonia", 1), case("c2", "Lung cancer", 2),
                                                          case("c3", "Pneumothorax", 3)])
    write_json(csvs / "radiology_article_npy_train.json", [case("t1", "Pneumonia", 4), case("t2", "Lung cancer", 5),
                                                           case("t3", "Pneumothorax", 6)])
    write_json(csvs / "articles_resave.json", {t: {"text": t} for t in ("Pneumonia", "Lung cancer", "Pneumothorax", "Glioma")})
    write_json(csvs / "modality_set.json", {"modality": ["CT", "MRI", "X-ray"]})
    write_csv(csvs / "radio_modality_test.csv", ["image_path", "answer"],
              [["pkg:pydicom/CT_small.dcm", "CT"], ["images/xr1.png", "X-ray"], ["pkg:nibabel/tests/data/anatomical.nii", "MRI"]])
    write_csv(csvs / "radio_modality_train.csv", ["image_path", "answer"],
              [["images/xr2.png", "X-ray"], ["pkg:pydicom/MR_small.dcm", "MRI"], ["images/xr3.png", "X-ray"]])
    # Public 2D VQA sets, some under their other spellings.
    vqa = ["img_root_dir", "Figure_path", "Question", "Answer"]
    for test, train in (("PMC_VQA_test.csv", "pmcvqa_train.csv"), ("VQA_RAD_test.csv", "vqarad_train.csv"),
                        ("slakevqa_test.csv", "slakevqa_train.csv")):
        write_csv(csvs / test, vqa, [["images", "xr1.png", "Is this normal?", "yes"], ["", "images/xr2.png", "What organ?", "lung"]])
        write_csv(csvs / train, vqa, [["images", "xr3.png", "Is this normal?", "no"], ["images", "xr4.png", "What organ?", "heart"],
                                     ["images", "xr5.png", "Which side?", "left"]])
    figs = root / "figures"
    for pmc in ("PMC1", "PMC2", "PMC3", "PMC4"):
        for fig in ("1", "2"):
            png(figs / f"{pmc}_{fig}.jpg", seed=int(pmc[-1]) * 10 + int(fig))
    long_context = "One. Two. Three. Four. Five. Six. Seven"
    cr = ["PMC_id", "img_ref", "context", "question", "answer"]
    write_csv(csvs / "filtered_case_report_test.csv", cr, [
        ["PMC1", "['1', '2']", long_context, "Q:What is shown?", "A:A mass"],
        ["PMC2", "['1']", "A short context.", "Q:Which side?", "A:left"],
    ])
    write_csv(csvs / "filtered_case_report_train.csv", cr, [
        ["PMC3", "['1']", "Context three.", "Q:What is shown?", "A:A cyst"],
        ["PMC4", "['2']", "Context four.", "Q:Which side?", "A:right"],
    ])
    write_csv(csvs / "mimic_caption_test.csv", ["image_path", "label"], [
        ["images/xr1.png", "Findings: Clear lungs. Impression: Normal."], ["images/xr2.png", "Impression: Effusion."]])
    write_csv(csvs / "mimic_caption_train.csv", ["image_path", "label"], [
        ["images/xr3.png", "Findings: Clear. Impression: Normal."], ["images/xr4.png", "Impression: Edema."],
        ["images/xr5.png", "Impression: Cardiomegaly."]])
    for prefix in ("chestxray", "pcxr", "mammo", "spinexr"):
        write_csv(csvs / f"{prefix}_balance_test.csv", ["image_path", "disease", "label"],
                  [["images/xr1.png", "Cardiomegaly", "1"], ["images/xr2.png", "Cardiomegaly", "0"]])
        train_name = "chestxray_balance_train_new.csv" if prefix == "chestxray" else f"{prefix}_balance_train.csv"
        write_csv(csvs / train_name, ["image_path", "disease", "label"],
                  [["images/xr3.png", "Nodule", "1"], ["images/xr4.png", "Nodule", "0"], ["images/xr5.png", "Effusion", "1"]])
        write_csv(csvs / f"{prefix}_test.csv", ["image_path", "label"], [["images/xr6.png", "Cardiomegaly"]])
        open_train = "chestxray_new.csv" if prefix == "chestxray" else f"{prefix}_train_new.csv"
        write_csv(csvs / open_train, ["image_path", "label"], [["images/xr7.png", "Nodule"], ["images/xr8.png", "Effusion"]])
    return root


def image_root_arg(root: Path) -> str:
    """The ``--image-root`` rewrite that maps the fixture's authors' paths into the root."""
    return f"{AUTHORS}={root / 'radiopaedia'}"
