"""The public datasets by name, each with the layouts it is published in (detected from ``--data-root``).

``radbench list datasets`` shows them; docs/data.md says where each layout was checked.
"""

from __future__ import annotations

from radbench.tasks.datasets import hub_parquet, mimic_cxr_jpg, pmc_vqa_csv, r2gen, radfm, slake_json, vqa_rad_osf
from radbench.tasks.datasets.formats import PublishedDataset


class VQARad(PublishedDataset):
    name = "vqa-rad"
    description = ("VQA-RAD (2D radiology VQA, open and closed): the OSF release, the Hub parquet "
                   "(default: flaviagiammarino/vqa-rad) or RadFM's CSV")
    subset = "vqarad"
    formats = (vqa_rad_osf.FORMAT, hub_parquet.FORMAT)
    radfm_class = radfm.VQARad
    hub_repo = "flaviagiammarino/vqa-rad"
    hub_files = ("*.parquet", "VQA_RAD*")


class Slake(PublishedDataset):
    name = "slake"
    description = "SLAKE, English questions: Slake1.0 json + imgs/ (default: BoKelvin/SLAKE) or RadFM's CSV"
    subset = "slake"
    formats = (slake_json.FORMAT,)
    radfm_class = radfm.Slake
    hub_repo = "BoKelvin/SLAKE"
    hub_files = ("*.json", "imgs.zip", "imgs/*", "Slake1.0/*")


class SlakeZh(PublishedDataset):
    name = "slake-zh"
    description = "SLAKE, Chinese questions (q_lang zh): Slake1.0 json + imgs/ (default: BoKelvin/SLAKE)"
    subset = "slake-zh"
    formats = (slake_json.FORMAT_ZH,)
    hub_repo = "BoKelvin/SLAKE"
    hub_files = Slake.hub_files


class PMCVQA(PublishedDataset):
    name = "pmc-vqa"
    description = ("PMC-VQA: the authors' test_clean.csv/test.csv + images/ with choices A-D "
                   "(default: xmcmic/PMC-VQA) or RadFM's open-question CSV")
    subset = "pmcvqa"
    formats = (pmc_vqa_csv.FORMAT,)
    radfm_class = radfm.PMCVQA
    hub_repo = "xmcmic/PMC-VQA"
    hub_files = ("test_clean.csv", "test.csv", "train.csv", "images.zip", "images/*")


class MimicCXR(PublishedDataset):
    name = "mimic-cxr"
    description = ("MIMIC-CXR report generation (frontal views; findings + impression): PhysioNet's "
                   "MIMIC-CXR-JPG with the reports, R2Gen's annotation.json, or RadFM's CSV")
    task = "report"
    family = "report-2d"
    subset = "mimic-cxr"
    formats = (mimic_cxr_jpg.FORMAT, r2gen.FORMAT)
    radfm_class = radfm.MimicCXR


class IUXray(PublishedDataset):
    name = "iu-xray"
    description = "IU X-ray (Open-i) report generation: R2Gen's annotation.json + images/ (two views per study)"
    task = "report"
    family = "report-2d"
    subset = "iu-xray"
    formats = (r2gen.FORMAT,)


