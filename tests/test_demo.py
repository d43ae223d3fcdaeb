"""The embedded demo: its files match their generator, and its ground truth is true of its images."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest

from radbench import images
from radbench.tasks.demo import FILES, LAYOUT, DemoDataset, image_root
from radbench.tasks.demo.build import CT_CASES, CXR_CASES, REAL_SCANS, build, real_scan_answers
from radbench.tasks.demo.phantoms import CT_LUNG_X, CXR_LUNG_X
from radbench.types import ImageRef


def test_committed_files_equal_a_fresh_build() -> None:
    built = build()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in FILES.iterdir()}
    assert on_disk == built


def test_demo_covers_every_task_2d_3d_and_multi_image() -> None:
    demo = DemoDataset()
    test = {task: demo.load(task, "test") for task in LAYOUT}
    train = {task: demo.load(task, "train") for task in LAYOUT}
    assert all(test.values()) and all(train.values())
    every = [s for samples in test.values() for s in samples]
    studies = {s.study_id for s in every}
    assert len(studies) >= 30
    kinds = {img.kind for s in every for img in s.images}
    assert kinds == {"2d", "3d"}
    assert any(len(s.images) > 1 and s.images[0].kind == "2d" for s in every)
    assert any(len(s.images) > 1 and s.images[0].kind == "3d" for s in every)
    assert {s.answer_type for s in test["diagnosis"]} == {"closed"}
    assert not {s.id for s in every} & {s.id for samples in train.values() for s in samples}


def test_every_demo_image_loads() -> None:
    demo = DemoDataset()
    refs = {img for task in LAYOUT for split in ("test", "train") for s in demo.load(task, split) for img in s.images}
    for ref in refs:
        arr = images.load(ref)
        assert np.isfinite(arr).all() and arr.std() > 0


@pytest.mark.parametrize("path", [p for p, _ in REAL_SCANS])
def test_real_scan_answers_come_from_dicom_metadata(path: str) -> None:
    local = images.resolve(ImageRef(path=path))
    modality = str(pydicom.dcmread(str(local), stop_before_pixels=True).Modality)
    assert real_scan_answers(path)["modality"] == {"CT": "CT", "MR": "MRI"}[modality]
    rows = (FILES / "radio_modality_test.csv").read_text() + (FILES / "radio_modality_train.csv").read_text()
    assert f"{path},{real_scan_answers(path)['modality']}" in rows



def _fluid_pixels(pixels: np.ndarray, side: str) -> int:
    """Pixels at fluid intensity (140) in a lung's lower half; heart (160) and body (110) are excluded."""
    x = CXR_LUNG_X[side]
    box = pixels[120:196, x - 38 : x + 39].astype(int)
    return int(((box > 125) & (box < 152)).sum())


@pytest.mark.parametrize(("case", "split", "params"), CXR_CASES)
def test_cxr_phantom_findings_are_where_the_labels_say(case: str, split: str, params: dict) -> None:
    pixels = images.load(ImageRef(f"images/{case}.png", "2d", str(image_root())))[0]
    effusion = params.get("effusion")
    for side in ("left", "right"):
        fluid = _fluid_pixels(pixels, side) > 100
        assert fluid == (effusion in (side, "bilateral")), (case, side)
    if params.get("nodule"):
        x = CXR_LUNG_X[params["nodule"]]
        other = CXR_LUNG_X["left" if params["nodule"] == "right" else "right"]
        assert pixels[100, x] > 190 and pixels[100, other] < 100
    heart_row = pixels[170]
    heart_width = int((heart_row > 150).sum())
    assert (heart_width / 172 > 0.5) == (params.get("ctr", 0.42) > 0.5), case


@pytest.mark.parametrize(("case", "split", "params"), CT_CASES)
def test_ct_phantom_lesions_are_on_the_labelled_side(case: str, split: str, params: dict) -> None:
    vol = images.load(ImageRef(f"images/{case}.npy", "3d", str(image_root()), index=0))[0]  # (H, W, D)
    bright = vol > 150
    if params["region"] == "head":
        bright &= vol < 240  # exclude the skull
        cols = np.nonzero(bright)[1]
        assert cols.size and ((cols.mean() < 32) == (params["haemorrhage"] == "right"))
    elif params.get("nodules"):
        for side in ("left", "right"):
            x = CT_LUNG_X[side]
            present = bright[:, x - 6 : x + 7, :].any()
            assert present == any(s == side for s, _ in params["nodules"]), (case, side)
    else:
        for side in ("left", "right"):
            x = CT_LUNG_X[side]
            fluid = vol[42:47, x - 3 : x + 4, :].mean() > 60
            assert fluid == (params["effusion"] in (side, "bilateral")), (case, side)


ROOT = Path(__file__).resolve().parent.parent


def _make_dry_run(target: str, *variables: str, venv: Path) -> str:
    """The commands ``make TARGET`` would run (``make -n``: nothing is installed or fetched)."""
    proc = subprocess.run(["make", "-n", "-C", str(ROOT), target, f"VENV={venv}", *variables],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_install_takes_the_cpu_wheel_only_when_asked(tmp_path: Path) -> None:
    """Default install unchanged (the configured index); TORCH_INDEX=cpu adds PyTorch's CPU index."""
    default = [line for line in _make_dry_run("install", venv=tmp_path / "v").splitlines() if "torch==" in line]
    cpu = [line for line in _make_dry_run("install", "TORCH_INDEX=cpu", venv=tmp_path / "v").splitlines()
           if "torch==" in line]
    install = [line for line in default if "pip install" in line]
    assert install and all("--index-url" not in line for line in install)
    assert any('--index-url "https://download.pytorch.org/whl/cpu" "torch==2.13.0"' in line for line in cpu)
    mirror = _make_dry_run("install", "TORCH_INDEX=https://mirror.example/simple", venv=tmp_path / "v")
    assert '--index-url "https://mirror.example/simple" "torch==' in mirror
    readme = (ROOT / "README.md").read_text()
    assert "make install TORCH_INDEX=cpu" in readme and "nvidia-*" in readme


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_keeps_leaderboard_screenshots(tmp_path: Path) -> None:
    commands = _make_dry_run("demo", venv=tmp_path / "v").splitlines()
    demo = next(i for i, c in enumerate(commands) if "radbench demo --output runs/demo" in c)
    assert commands[demo + 1].endswith("python -m radbench.leaderboard.browser runs/demo/index.html")
