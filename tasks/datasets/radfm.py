"""RadBench and the public sets RadFM evaluates on, read from the user's copy of RadFM's files.

Point ``--data-root`` at the unzipped ``RadFM_data_csv`` (the files may sit in a sub-folder such as
``data_csv/``) next to the images. Each file is looked up under every spelling the RadFM code, its
README and its Hugging Face card use, so a renamed download needs no
renaming by hand. Image paths in the published files are the authors' absolute paths: map them
with ``--image-root OLD=NEW``; ``radbench validate`` shows which prefixes need it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from radbench import safe_io
from radbench.errors import UsageError
from radbench.tasks.base import DataOptions, cap_images
from radbench.tasks.datasets import radfm_files as rf
from radbench.tasks.datasets.common import Source, locate, read_data_bytes
from radbench.tasks.templates import FAMILIES, PromptLibrary, plan_all
from radbench.types import Sample

SPLITS = ("test", "train")

# Auxiliary files some readers need, by role, with their known spellings.
AUXILIARY: dict[str, tuple[str, ...]] = {
    "modalities": ("modality_set.json",),
    "titles": ("articles_resave.json", "article.json", "articles.json"),
}


@dataclass(frozen=True)
class Part:
    """One subset of a dataset: a reader over one file, its spellings per split, its prompt family."""

    subset: str
    reader: rf.Reader
    files: dict[str, tuple[str, ...]]
    family: str
    needs: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.family in FAMILIES, self.family


def _both(test: tuple[str, ...], train: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    return {"test": test, "train": train}


def load_auxiliary(role: str, path: Path) -> Any:
    """The modality list of ``modality_set.json``, or the article titles (keys of ``articles_resave.json``)."""
    try:
        data = safe_io.loads_json(read_data_bytes(path).decode("utf-8"), allow_nan=True)
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # a lone surrogate escape ("\ud800") is not text
    except (UnicodeError, ValueError) as exc:  # JSONDecodeError and safe_io.UnsafeInput are ValueErrors
        raise UsageError(f"{path}: not valid UTF-8 JSON ({exc})") from None
    if role == "modalities":
        if not isinstance(data, dict) or not isinstance(data.get("modality"), list):
            raise UsageError(f"{path}: expected {{\"modality\": [...]}}")
        return {"modalities": tuple(str(m) for m in data["modality"])}
    if not isinstance(data, dict) or not data:
        raise UsageError(f"{path}: expected an object keyed by article title")
    return {"titles": tuple(str(t) for t in data)}


class FileDataset:
    """A dataset made of :class:`Part` s, with every sample's prompt planned as it is read."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    layout: ClassVar[dict[str, tuple[Part, ...]]] = {}
    tasks: ClassVar[tuple[str, ...]] = ()
    is_demo: ClassVar[bool] = False
    # RadFM's loader keeps at most 8 images of a sample (tasks.base.cap_images); --max-images overrides.
    max_images: ClassVar[int | None] = 8

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.tasks = tuple(cls.layout)

    def files_root(self, options: DataOptions) -> Path:
        if not options.data_root:
            raise UsageError(f"dataset {self.name!r} needs --data-root (the folder with RadFM's data files and images)")
        root = Path(options.data_root)
        if not root.is_dir():
            raise UsageError(f"--data-root {options.data_root}: not a folder")
        return root

    def find(self, names: tuple[str, ...], options: DataOptions, what: str) -> Path:
        root = self.files_root(options)
        path = locate(root, names)
        if path is None:
            raise UsageError(f"dataset {self.name!r}: {what} not found in {root} or its sub-folders (looked for {', '.join(names)})")
        return path

    def image_root(self, options: DataOptions) -> str | None:
        return options.data_root

    def sources(self, task: str, split: str, options: DataOptions) -> list[tuple[Part, Source, dict[str, Any]]]:
        """Each part's file, as a :class:`Source`, with its auxiliary data (all checked, nothing read)."""
        if task not in self.layout:
            raise UsageError(f"dataset {self.name!r} has no task {task!r}; it covers {', '.join(self.layout)}")
        if split not in SPLITS:
            raise UsageError(f"dataset {self.name!r} has splits {' and '.join(SPLITS)}, not {split!r}")
        out = []
        for part in self.layout[task]:
            path = self.find(part.files[split], options, f"the {split} file of {part.subset!r}")
            extra = dict(part.extra)
            for role in part.needs:
                extra.update(load_auxiliary(role, self.find(AUXILIARY[role], options, AUXILIARY[role][0])))
            src = Source(path, self.name, part.subset, split, task, options, self.image_root(options))
            out.append((part, src, extra))
        return out

    def load(self, task: str, split: str, data_root: str | None = None,
             options: DataOptions | None = None) -> list[Sample]:
        options = replace(options or DataOptions(), data_root=data_root)
        library = PromptLibrary.discover(options)
        samples: list[Sample] = []
        cap = options.image_cap(self.max_images)
        for part, src, extra in self.sources(task, split, options):
            capped = [cap_images(s, cap, options.seed) for s in part.reader(src, **extra)]
            samples += plan_all(capped, part.family, library, options.seed)
        return samples


_ARTICLES = _both(("radiology_article_npy_test.json", "radiology_test.json"),
                  ("radiology_article_npy_train.json", "radiology_train.json"))
_MODALITY = _both(("radio_modality_test.csv",), ("radio_modality_train.csv",))


class RadBench(FileDataset):
    name = "radbench"
    description = "RadFM's Radiopaedia-derived test sets (3D, multi-scan): VQA, reports, rationale, yes/no disease and modality"
    layout = {
        "vqa": (Part("radiovqa", rf.radio_vqa_csv, _both(("radiology_vqa_test.csv", "radiology_vqa_test.json"),
                                                         ("radiology_vqa_train.csv", "radiology_vqa_train.json")), "vqa"),),
        "report": (Part("radiocaption", rf.article_report, _ARTICLES, "report-scans"),),
        "rationale": (Part("radiofeatures", rf.article_rationale, _ARTICLES, "rationale"),),
        "diagnosis": (
            Part("radiofeatures-yes-no", rf.article_yes_no, _ARTICLES, "yes-no-scans", needs=("titles",)),
            Part("radiomodality", rf.modality_csv, _MODALITY, "modality", needs=("modalities",)),
        ),
    }


class VQARad(FileDataset):
    name = "vqa-rad"
    description = "VQA-RAD (2D radiology VQA, open and closed questions)"
    layout = {"vqa": (Part("vqarad", rf.vqa_csv, _both(("vqarad_test.csv", "VQA_RAD_test.csv", "vqa_rad_test.csv"),
                                                        ("vqarad_train.csv", "VQA_RAD_train.csv", "vqa_rad_train.csv")), "vqa"),)}


class Slake(FileDataset):
    name = "slake"
    description = "SLAKE (2D radiology VQA, English)"
    layout = {"vqa": (Part("slake", rf.vqa_csv, _both(("slakevqa_test.csv", "slake_test.csv", "SLAKE_test.csv"),
                                                       ("slakevqa_train.csv", "slake_train.csv", "SLAKE_train.csv")), "vqa"),)}


class PMCVQA(FileDataset):
    name = "pmc-vqa"
    description = "PMC-VQA (2D figures from PubMed Central, open questions as RadFM asks them)"
    layout = {"vqa": (Part("pmcvqa", rf.vqa_csv, _both(("pmcvqa_test.csv", "pmcvaq_test.csv", "PMC_VQA_test.csv", "pmc_vqa_test.csv"),
                                                        ("pmcvqa_train.csv", "pmcvaq_train.csv", "PMC_VQA_train.csv", "pmc_vqa_train.csv")),
                                          "vqa"),)}


class PMCCaseReport(FileDataset):
    name = "pmc-casereport"
    description = "PMC-CaseReport (case context + question, several 2D figures; figures in DATA_ROOT/figures)"
    layout = {"vqa": (Part("casereport", rf.case_report_csv,
                           _both(("filtered_case_report_test.csv", "filtered_casa_report_test.csv", "case_report_test.csv", "casa_report_test.csv"),
                                 ("filtered_case_report_train.csv", "filtered_casa_report_train.csv", "case_report_train.csv", "casa_report_train.csv")),
                           "case-report", extra={"figure_dir": "figures"}),)}


class MimicCXR(FileDataset):
    name = "mimic-cxr"
    description = "MIMIC-CXR report generation (2D chest X-rays; findings and impression)"
    layout = {"report": (Part("mimic-caption", rf.chestxray_csv, _both(("mimic_caption_test.csv", "mimic_caption_tes.csv"),
                                                                       ("mimic_caption_train.csv",)), "report-2d"),)}


def _diagnosis(prefix: str, open_test: tuple[str, ...], open_train: tuple[str, ...], balance_train: tuple[str, ...],
               family: str) -> dict[str, tuple[Part, ...]]:
    return {"diagnosis": (
        Part(f"{prefix}-yes-no", rf.binary_csv, _both((f"{prefix}_balance_test.csv",), balance_train), "yes-no"),
        Part(f"{prefix}-open", rf.chestxray_csv, _both(open_test, open_train), family),
    )}


class ChestXray(FileDataset):
    name = "chestxray"
    description = "Chest X-ray diagnosis (RadFM's merged set): balanced yes/no and open diagnosis"
    layout = _diagnosis("chestxray", ("chestxray_test.csv",), ("chestxray_new.csv", "chestxray_train_new.csv", "chestxray_train.csv"),
                        ("chestxray_balance_train_new.csv", "chestxray_balance_train.csv"), "diagnosis-chest")


class PCXR(FileDataset):
    name = "pcxr"
    description = "VinDr-PCXR paediatric chest X-ray diagnosis: balanced yes/no and open diagnosis"
    layout = _diagnosis("pcxr", ("pcxr_test.csv",), ("pcxr_train_new.csv", "pcxr_train.csv"), ("pcxr_balance_train.csv",),
                        "diagnosis-chest")


class Mammo(FileDataset):
    name = "mammo"
    description = "VinDr-Mammo mammography diagnosis: balanced yes/no and open diagnosis"
    layout = _diagnosis("mammo", ("mammo_test.csv",), ("mammo_train_new.csv", "mammo_train.csv"), ("mammo_balance_train.csv",),
                        "diagnosis-mammo")


class SpineXR(FileDataset):
    name = "spinexr"
    description = "VinDr-SpineXR spine X-ray diagnosis: balanced yes/no and open diagnosis"
    layout = _diagnosis("spinexr", ("spinexr_test.csv",), ("spinexr_train_new.csv", "spinexr_train.csv"),
                        ("spinexr_balance_train.csv",), "diagnosis-spine")


class RadioModality(FileDataset):
    name = "radio-modality"
    description = "Radiopaedia modality recognition (3D scans; open question over RadFM's modality set)"
    layout = {"diagnosis": (Part("radiomodality", rf.modality_csv, _MODALITY, "modality", needs=("modalities",)),)}
