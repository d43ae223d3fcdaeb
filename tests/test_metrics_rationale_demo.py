"""The demo's rationale cases: true of their phantoms, and scored so that every rationale metric shows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from radbench import images
from radbench.runner import RunConfig, run
from radbench.tasks.demo import image_root
from radbench.tasks.demo.build import CT_CASES, ct_description
from radbench.tasks.demo.phantoms import CT_LUNG_X
from radbench.types import ImageRef

BOTH = {"left", "right"}


def _sides(text: str) -> set[str]:
    return BOTH if "left and right" in text.lower() or "bilateral" in text.lower() else {
        s for s in BOTH if re.search(rf"\b{s}\b", text.lower())}


@pytest.mark.parametrize(("case", "params"), [(c, p) for c, _, p in CT_CASES if p["region"] == "chest"])
def test_chest_rationale_features_are_true_of_the_phantom(case: str, params: dict) -> None:
    """Sides and negations of every feature, checked on the pixels (combined cases included)."""
    vol = images.load(ImageRef(f"images/{case}.npy", "3d", str(image_root()), index=0))[0]  # (H, W, D)
    fluid = {s for s in BOTH if vol[42:47, CT_LUNG_X[s] - 3: CT_LUNG_X[s] + 4, :].mean() > 60}
    nodules = {s for s in BOTH if (vol[:, CT_LUNG_X[s] - 6: CT_LUNG_X[s] + 7, :] > 150).any()}
    features = ct_description(params)["features"]
    effusion = [f for f in features if "pleural effusion" in f.lower()]
    nodule = [f for f in features if "nodule" in f.lower() and not f.startswith("Largest")]
    assert len(effusion) == len(nodule) == 1, features
    assert (set() if effusion[0].startswith("No ") else _sides(effusion[0])) == fluid, (case, effusion)
    assert (set() if nodule[0].startswith("No ") else _sides(nodule[0])) == nodules, (case, nodule)


@pytest.mark.parametrize(("case", "params"), [(c, p) for c, _, p in CT_CASES if p["region"] == "head"])
def test_head_rationale_side_is_true_of_the_phantom(case: str, params: dict) -> None:
    vol = images.load(ImageRef(f"images/{case}.npy", "3d", str(image_root()), index=0))[0]
    cols = np.nonzero((vol > 150) & (vol < 240))[1]
    side = "right" if cols.mean() < 32 else "left"  # radiological convention: patient's right on the left
    assert _sides(ct_description(params)["features"][0]) == {side}


def test_demo_baselines_exercise_every_rationale_metric(tmp_path: Path) -> None:
    """What ``make demo`` prints for rationale: misses, second diagnoses, partial recall, wrong sides, wrong "no"."""
    res = {m: run(RunConfig(model=m, task="rationale", dataset="demo", output=tmp_path / m, quiet=True))["metrics"]
           for m in ("majority", "retrieval")}
    value = {m: {k: v["value"] for k, v in metrics.items()} for m, metrics in res.items()}
    majority, retrieval = value["majority"], value["retrieval"]
    assert majority["diagnosis_hit"] < majority["diagnosis_hit_any"] < 1.0
    assert 0.0 < majority["feature_recall"] < retrieval["feature_recall"] < 1.0
    assert majority["feature_precision"] < retrieval["feature_precision"] <= 1.0
    assert retrieval["laterality_error_rate"] > 0.0 and majority["negation_error_rate"] > 0.0
    assert majority["rationale_split_fallback_rate"] == 0.0
    # Per part: the same disease's article comes back whole, the case's features do not.
    assert retrieval["rationale_article_rougeL"] == 1.0 and majority["rationale_features_rougeL"] < 1.0
