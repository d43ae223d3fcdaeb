"""Model preprocessing: deterministic, as each model's authors resize, with a fingerprint; slice policy."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import torch
from PIL import Image

from radbench import images
from radbench.cli import main
from radbench.errors import UsageError
from radbench.models import flamingo, llava_med, medvint, radfm
from radbench.models.base import Adapter
from radbench.store import PREDICTIONS, RESULTS
from radbench.tasks.demo import DemoDataset
from radbench.types import ImageRef, Request


@pytest.fixture
def photo(tmp_path: Path) -> ImageRef:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "p.png")
    return ImageRef("p.png", "2d", str(tmp_path))


def test_nearest_resize_matches_torch_index_for_index() -> None:
    rng = np.random.default_rng(1)
    arr = rng.random((2, 3, 37, 41, 7), dtype=np.float32)
    for shape in [(512, 512, 8), (20, 50, 4), (37, 41, 7), (5, 100, 64)]:
        want = torch.nn.functional.interpolate(torch.from_numpy(arr), size=shape, mode="nearest").numpy()
        assert np.array_equal(images.resize_nearest(arr, shape), want), shape


@pytest.mark.parametrize(("depths", "target"), [([], 4), ([1], 4), ([6], 4), ([7], 8), ([34], 32), ([35], 36),
                                                 ([64], 64), ([300], 64), ([5, 17], 16)])
def test_radfm_target_depth_snaps_to_multiples_of_four_ties_down(depths: list[int], target: int) -> None:
    assert images.radfm_target_depth(depths) == target


def test_radfm_stack_shares_one_depth_and_repeats_2d_images() -> None:
    flat = np.random.default_rng(2).random((3, 20, 30), dtype=np.float32)
    vol = np.random.default_rng(3).random((3, 16, 16, 10), dtype=np.float32)
    stacked = images.radfm_stack([flat, vol], size=64)
    assert stacked.shape == (2, 3, 64, 64, 8)
    assert all(np.array_equal(stacked[0, ..., 0], stacked[0, ..., d]) for d in range(8))
    assert images.radfm_stack([flat], size=32).shape == (1, 3, 32, 32, 4)


def test_radfm_2d_is_a_fixed_bicubic_resize_to_unit_range(photo: ImageRef) -> None:
    spec = radfm.PRESET
    a, b = images.prepare(photo, spec).array, images.prepare(photo, spec).array
    assert a.shape == (3, 512, 512) and np.array_equal(a, b)
    with Image.open(images.resolve(photo)) as im:
        want = np.asarray(im.convert("RGB").resize((512, 512), Image.BICUBIC), dtype=np.float32) / 255
    assert np.array_equal(a, want.transpose(2, 0, 1))


def test_clip_resizes_the_shortest_edge_centre_crops_and_normalises(photo: ImageRef) -> None:
    spec = flamingo.PRESET
    out = images.prepare(photo, spec).array
    with Image.open(images.resolve(photo)) as im:
        resized = im.convert("RGB").resize((int(224 * 40 / 30), 224), Image.BICUBIC)
    left = int(round((resized.width - 224) / 2.0))
    want = np.asarray(resized, dtype=np.float32)[:, left : left + 224] / 255
    want = (want - np.array(spec.mean, np.float32)) / np.array(spec.std, np.float32)
    assert out.shape == (3, 224, 224)
    assert np.allclose(out, want.transpose(2, 0, 1), atol=1e-6)


def test_llava_pads_to_a_square_with_the_mean_colour(photo: ImageRef) -> None:
    spec = llava_med.PRESET
    out = images.prepare(photo, spec).array
    assert out.shape == (3, 336, 336)
    # The 30x40 image is padded top and bottom: the first rows are the mean colour, ~0 after normalising.
    assert np.abs(out[:, :10, :]).max() < 0.02
    assert np.abs(out[:, 168, :]).max() > 0.5


def test_scans_are_min_max_scaled_and_radfm_cases_over_the_whole_file(tmp_path: Path) -> None:
    case = np.stack([np.full((3, 8, 8, 4), 10.0, np.float32), np.full((3, 8, 8, 4), 30.0, np.float32)])
    case[0, :, 0, 0, 0] = 0.0
    np.save(tmp_path / "case.npy", case)
    second = images.prepare(ImageRef("case.npy", "3d", str(tmp_path), index=1), radfm.PRESET)
    assert second.array.shape == (3, 8, 8, 4) and np.allclose(second.array, 1.0)
    first = images.prepare(ImageRef("case.npy", "3d", str(tmp_path), index=0), radfm.PRESET)
    assert np.isclose(first.array.max(), 10 / 30) and first.array.min() == 0.0
    ct = images.prepare(ImageRef("pkg:pydicom/CT_small.dcm"), medvint.PRESET)
    assert ct.array.shape == (3, 512, 512)
    lo = (0 - np.array(images.IMAGENET_MEAN)) / np.array(images.IMAGENET_STD)
    assert np.allclose(ct.array.min(axis=(1, 2)), lo, atol=1e-5)


def test_slice_policy_is_documented_configurable_and_reported(tmp_path: Path) -> None:
    policy = images.SlicePolicy.parse("even:3")
    assert policy.indices(10) == [1, 5, 8] and policy.indices(2) == [0, 1]
    assert images.SlicePolicy.parse("middle").indices(25) == [12]
    assert images.SlicePolicy.parse("all").indices(4) == [0, 1, 2, 3]
    for bad in ("even:0", "even", "every", "even:x"):
        with pytest.raises(UsageError, match="slice policy"):
            images.SlicePolicy.parse(bad)
    ref = ImageRef("pkg:nibabel/tests/data/anatomical.nii", "3d")
    spec = flamingo.PRESET.with_slices("even:3")
    prepared = images.prepare(ref, spec)
    assert prepared.array.shape == (3, 3, 224, 224)
    assert images.describe_input(ref, spec) == prepared.info == {"depth": 25, "slices": [4, 12, 20], "slice_policy": "even:3"}
    assert images.describe_input(ImageRef("pkg:pydicom/CT_small.dcm"), spec) == {}


def test_fingerprint_changes_with_every_setting_and_only_then() -> None:
    base = flamingo.PRESET
    assert base.fingerprint() == flamingo.PRESET.fingerprint()
    variants = [replace(base, size=336), replace(base, resize="squash"), replace(base, interpolation="bilinear"),
                replace(base, mean=images.IMAGENET_MEAN), base.with_slices("even:5"), replace(base, volume="radfm")]
    prints = {v.fingerprint() for v in variants} | {base.fingerprint()}
    assert len(prints) == len(variants) + 1
    assert "RandomResizedCrop" in base.describe()["deterministic"]


def test_datasets_never_read_pixels_when_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels read while building a dataset")

    for name in ("read", "load", "prepare"):
        monkeypatch.setattr(images, name, forbidden)
    samples = [s for task in DemoDataset.tasks for s in DemoDataset().load(task, "test")]
    assert sum(len(s.images) for s in samples) > 100


class SlicingModel(Adapter):
    """A 2D-only model that declares its preprocessing and reads every slice it is given."""

    name = "slicing"
    spec = flamingo.PRESET.with_slices("even:2")

    def generate(self, requests: Sequence[Request]) -> list[str]:
        return [str(sum(len(images.prepare(ref, self.spec).array) for ref in r.images)) for r in requests]

    def fingerprint(self) -> str:
        return "slicing-" + self.spec.fingerprint()


def test_declared_preprocessing_and_slice_choices_reach_results_and_predictions(tmp_path: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--model", "tests.test_images_preprocess:SlicingModel", "--task", "rationale", "--dataset", "demo",
                 "--limit", "2", "--output", str(out), "--quiet"]) == 0
    res = json.loads((out / RESULTS).read_text())
    assert res["preprocessing"]["fingerprint"] == SlicingModel.spec.fingerprint()
    assert res["preprocessing"]["slices"] == "even:2"
    for pred in map(json.loads, (out / PREDICTIONS).read_text().splitlines()):
        assert pred["images"] and all(img["slice_policy"] == "even:2" and len(img["slices"]) == 2 for img in pred["images"])
        assert pred["prediction"] == str(2 * len(pred["images"]))
