"""The embedded ``demo`` dataset: a DEMO for trying radbench offline, NOT a benchmark.

Its files are in RadFM's own formats and ship inside the package (``files/``); its images are
synthetic phantoms, rendered on first use into radbench's cache folder, plus real sample scans that
pydicom and nibabel ship in their wheels, found at run time in the installed packages. Scores on it
say whether the harness works, not how good a model is.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from radbench.options import cache_root
from radbench.tasks.base import DataOptions
from radbench.tasks.datasets import radfm_files as rf
from radbench.tasks.datasets.radfm import FileDataset, Part

FILES = Path(__file__).with_name("files")
DEMO_VERSION = "1"


def _files(stem: str) -> dict[str, tuple[str, ...]]:
    return {split: (stem.format(split=split),) for split in ("test", "train")}


LAYOUT: dict[str, tuple[Part, ...]] = {
    "vqa": (
        Part("demo-cxr-vqa", rf.vqa_csv, _files("vqa2d_{split}.csv"), "vqa"),
        Part("demo-cxr-followup", rf.case_report_csv, _files("case_report_{split}.csv"), "case-report",
             extra={"figure_dir": "images"}),
        Part("demo-ct-vqa", rf.radio_vqa_csv, _files("radiology_vqa_{split}.csv"), "vqa"),
    ),
    "report": (
        Part("demo-cxr-report", rf.chestxray_csv, _files("mimic_caption_{split}.csv"), "report-2d"),
        Part("demo-ct-report", rf.article_report, _files("radiology_article_npy_{split}.json"), "report-scans"),
    ),
    "rationale": (
        Part("demo-ct-rationale", rf.article_rationale, _files("radiology_article_npy_{split}.json"), "rationale"),
    ),
    "diagnosis": (
        Part("demo-cxr-binary", rf.binary_csv, _files("chestxray_balance_{split}.csv"), "yes-no"),
        Part("demo-modality", rf.modality_csv, _files("radio_modality_{split}.csv"), "modality", needs=("modalities",)),
    ),
}


def cache_dir() -> Path:
    """Where radbench keeps data it renders; ``RADBENCH_CACHE`` overrides the per-user default."""
    return cache_root()


def image_root() -> Path:
    """The folder holding the rendered phantoms, rendered once (atomically) on first use.

    The folder name carries a hash of the phantom specifications, so editing a case never reuses
    stale renders.
    """
    spec_text = (FILES / "phantoms.json").read_text()
    root = cache_dir() / f"demo-v{DEMO_VERSION}-{hashlib.sha256(spec_text.encode()).hexdigest()[:12]}"
    if (root / ".complete").exists():
        return root
    from radbench.tasks.demo.phantoms import GENERATORS

    specs = json.loads(spec_text)
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".demo-", dir=root.parent))
    try:
        (tmp / "images").mkdir()
        for rel, spec in specs.items():
            pixels = GENERATORS[spec["generator"]](spec["params"], spec["seed"])
            target = tmp / rel
            if target.suffix == ".npy":
                np.save(target, pixels)
            else:
                from PIL import Image

                Image.fromarray(pixels).save(target, quality=95)  # quality only applies to .jpg
        (tmp / ".complete").write_text(DEMO_VERSION)
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished first: its copy is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


class DemoDataset(FileDataset):
    """The demo's files ship in the package and its images render into the cache: no --data-root."""

    name = "demo"
    description = "DEMO ONLY: synthetic phantoms + scans shipped by pydicom/nibabel, in RadFM's file formats"
    layout = LAYOUT
    is_demo = True

    def find(self, names: tuple[str, ...], options: DataOptions, what: str) -> Path:
        return FILES / names[0]

    def image_root(self, options: DataOptions) -> str | None:
        return str(image_root())
