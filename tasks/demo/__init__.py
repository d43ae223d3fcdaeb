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

from radbench.errors import UsageError
from radbench.tasks.datasets import radfm_files as rf
from radbench.types import Sample

FILES = Path(__file__).with_name("files")
DEMO_VERSION = "1"

# task -> [(subset, reader, file stem, extra reader arguments)]
LAYOUT: dict[str, list[tuple[str, rf.Reader, str, dict[str, object]]]] = {
    "vqa": [
        ("demo-cxr-vqa", rf.vqa_csv, "vqa2d_{split}.csv", {}),
        ("demo-cxr-followup", rf.case_report_csv, "case_report_{split}.csv", {"figure_dir": "images"}),
        ("demo-ct-vqa", rf.radio_vqa_csv, "radiology_vqa_{split}.csv", {}),
    ],
    "report": [
        ("demo-cxr-report", rf.chestxray_csv, "mimic_caption_{split}.csv", {}),
        ("demo-ct-report", rf.article_json, "radiology_article_npy_{split}.json", {}),
    ],
    "rationale": [
        ("demo-ct-rationale", rf.article_json, "radiology_article_npy_{split}.json", {}),
    ],
    "diagnosis": [
        ("demo-cxr-binary", rf.binary_csv, "chestxray_balance_{split}.csv", {}),
        ("demo-modality", rf.modality_csv, "radio_modality_{split}.csv", {}),
    ],
}


def cache_dir() -> Path:
    """Where radbench keeps data it renders; ``RADBENCH_CACHE`` overrides the per-user default."""
    return Path(os.environ.get("RADBENCH_CACHE") or Path.home() / ".cache" / "radbench")


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


class DemoDataset:
    name = "demo"
    tasks = tuple(LAYOUT)
    description = "DEMO ONLY: synthetic phantoms + scans shipped by pydicom/nibabel, in RadFM's file formats"
    is_demo = True

    def load(self, task: str, split: str, data_root: str | None = None) -> list[Sample]:
        if task not in LAYOUT:
            raise UsageError(f"dataset 'demo' has no task {task!r}; it covers {', '.join(LAYOUT)}")
        if split not in ("test", "train"):
            raise UsageError(f"dataset 'demo' has splits 'test' and 'train', not {split!r}")
        root = str(image_root())
        modalities = tuple(json.loads((FILES / "modality_set.json").read_text())["modality"])
        samples: list[Sample] = []
        for subset, reader, stem, extra in LAYOUT[task]:
            kwargs = dict(extra)
            if reader is rf.modality_csv:
                kwargs["modalities"] = modalities
            samples += reader(FILES / stem.format(split=split), root, self.name, subset, split, task, **kwargs)
        return samples
