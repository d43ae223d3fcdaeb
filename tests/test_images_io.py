"""Image I/O: every format, DICOM series order and rescale, windows, the data-root fence, bad files."""

from __future__ import annotations

import copy
import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from radbench import images
from radbench.errors import SampleError, UsageError
from radbench.types import ImageRef

CT_SMALL = ImageRef("pkg:pydicom/CT_small.dcm")


def _series(folder: Path, slices: list[dict]) -> Path:
    """A series folder made from CT_small: each slice a constant image ``value`` with its own
    position ``z``, InstanceNumber ``n`` and optional intercept, saved under ``name``."""
    base = pydicom.dcmread(images.resolve(CT_SMALL))
    folder.mkdir(parents=True, exist_ok=True)
    for s in slices:
        ds = copy.deepcopy(base)
        ds.PixelData = np.full(base.pixel_array.shape, s["value"], dtype=np.int16).tobytes()
        ds.ImagePositionPatient = [0.0, 0.0, float(s["z"])]
        ds.InstanceNumber = s["n"]
        ds.RescaleIntercept = s.get("intercept", 0)
        if "series" in s:
            ds.SeriesInstanceUID = s["series"]
        ds.save_as(folder / s["name"])
    return folder


def test_png_and_jpeg_read_as_rgb_with_8bit_range(tmp_path: Path) -> None:
    pixels = np.arange(6 * 5 * 3, dtype=np.uint8).reshape(6, 5, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels[..., 0], "L").save(tmp_path / "b.jpg", quality=100)
    loaded = images.read(ImageRef("a.png", "2d", str(tmp_path)))
    assert loaded.array.shape == (3, 6, 5) and loaded.value_range == (0.0, 255.0)
    assert np.array_equal(loaded.array.transpose(1, 2, 0), pixels.astype(np.float32))
    grey = images.load(ImageRef("b.jpg", "2d", str(tmp_path)))
    assert grey.shape == (3, 6, 5) and np.array_equal(grey[0], grey[2])


def test_radfm_npy_selects_the_scan_and_rejects_bad_volumes(tmp_path: Path) -> None:
    case = np.stack([np.full((3, 8, 8, 4), i, dtype=np.float32) for i in range(3)])
    np.save(tmp_path / "case.npy", case)
    for i in range(3):
        assert np.all(images.load(ImageRef("case.npy", "3d", str(tmp_path), index=i)) == i)
    with pytest.raises(SampleError, match="scan index 3 out of range"):
        images.load(ImageRef("case.npy", "3d", str(tmp_path), index=3))
    with pytest.raises(SampleError, match="declared 2d"):
        images.load(ImageRef("case.npy", "2d", str(tmp_path), index=0))
    case[1, 0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", case)
    with pytest.raises(SampleError, match="NaN"):
        images.load(ImageRef("nan.npy", "3d", str(tmp_path), index=1))
    np.save(tmp_path / "flat.npy", np.zeros((2, 2, 2, 2, 2, 2)))
    with pytest.raises(SampleError, match="unsupported array shape"):
        images.load(ImageRef("flat.npy", "3d", str(tmp_path)))
    data = (tmp_path / "case.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleError, match="unreadable .npy"):
        images.load(ImageRef("cut.npy", "3d", str(tmp_path), index=2))


def test_nifti_is_shown_in_radiological_convention_whatever_its_storage_order(tmp_path: Path) -> None:
    # A marker in the patient's right-anterior corner, stored once in RAS and once in LPS order.
    ras = np.zeros((6, 5, 4), dtype=np.float32)
    ras[5, 4, 1] = 100  # RAS: x grows to the patient's right, y to the front; (5, 4) is right-anterior
    nib.save(nib.Nifti1Image(ras, np.eye(4)), tmp_path / "ras.nii.gz")
    lps = ras[::-1, ::-1, :].copy()
    nib.save(nib.Nifti1Image(lps, np.diag([-1.0, -1.0, 1.0, 1.0])), tmp_path / "lps.nii")
    a = images.load(ImageRef("ras.nii.gz", "3d", str(tmp_path)))
    b = images.load(ImageRef("lps.nii", "3d", str(tmp_path)))
    assert a.shape == (1, 5, 6, 4) and np.array_equal(a, b)
    # Radiological display: anterior at the top row, the patient's right on the image's left column.
    assert a[0, 0, 0, 1] == 100 and a.sum() == 100
    assert images.volume_depth(ImageRef("lps.nii", "3d", str(tmp_path))) == 4


def test_real_nibabel_scan_and_truncated_nifti(tmp_path: Path) -> None:
    ref = ImageRef("pkg:nibabel/tests/data/anatomical.nii", "3d")
    arr = images.load(ref)
    assert arr.ndim == 4 and arr.shape[0] == 1 and arr.std() > 0
    assert images.volume_depth(ref) == arr.shape[-1]
    data = gzip.compress(images.resolve(ref).read_bytes())
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 3])
    with pytest.raises(SampleError, match="unreadable NIfTI"):
        images.load(ImageRef("cut.nii.gz", "3d", str(tmp_path)))


def test_dicom_applies_rescale_and_reports_truncated_pixel_data() -> None:
    ds = pydicom.dcmread(images.resolve(CT_SMALL))
    expected = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert float(ds.RescaleIntercept) != 0
    assert np.array_equal(images.load(CT_SMALL)[0], expected)
    with pytest.raises(SampleError, match="unreadable DICOM pixel data"):
        images.load(ImageRef("pkg:pydicom/MR_truncated.dcm"))


def test_dicom_series_orders_by_position_then_instance_number_with_per_slice_rescale(tmp_path: Path) -> None:
    # File names, instance numbers and positions all disagree: the position must win.
    _series(tmp_path / "ct", [
        {"name": "a.dcm", "z": 30.0, "n": 1, "value": 3},
        {"name": "b.dcm", "z": -10.0, "n": 3, "value": 1, "intercept": -100},
        {"name": "c.dcm", "z": 10.0, "n": 2, "value": 2},
    ])
    ref = ImageRef("ct", "3d", str(tmp_path))
    vol = images.load(ref)
    assert vol.shape[0] == 1 and vol.shape[-1] == 3
    assert [float(vol[0, 0, 0, k]) for k in range(3)] == [1 - 100, 2, 3]
    assert images.read(ref).meta["slice_order"] == "ImagePositionPatient"
    assert images.volume_depth(ref) == 3
    first = images.file_sha256(ref)
    _series(tmp_path / "ct", [{"name": "c.dcm", "z": 10.0, "n": 2, "value": 7}])
    assert images.file_sha256(ref) != first
    # Equal positions: InstanceNumber decides.
    _series(tmp_path / "tie", [{"name": "x.dcm", "z": 0, "n": 2, "value": 20}, {"name": "y.dcm", "z": 0, "n": 1, "value": 10}])
    assert images.load(ImageRef("tie", "3d", str(tmp_path)))[0, 0, 0].tolist() == [10, 20]


def test_bad_series_folders_fail_naming_the_file(tmp_path: Path) -> None:
    _series(tmp_path / "mixed", [{"name": "a.dcm", "z": 0, "n": 1, "value": 1, "series": "1.2.3"},
                                 {"name": "b.dcm", "z": 1, "n": 2, "value": 1, "series": "1.2.4"}])
    with pytest.raises(SampleError, match="mixes 2 DICOM series"):
        images.load(ImageRef("mixed", "3d", str(tmp_path)))
    folder = _series(tmp_path / "cut", [{"name": "a.dcm", "z": 0, "n": 1, "value": 1}, {"name": "b.dcm", "z": 1, "n": 2, "value": 1}])
    data = (folder / "b.dcm").read_bytes()
    (folder / "b.dcm").write_bytes(data[: len(data) // 2])
    with pytest.raises(SampleError, match=r"b\.dcm"):
        images.load(ImageRef("cut", "3d", str(tmp_path)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SampleError, match="empty DICOM series"):
        images.load(ImageRef("empty", "3d", str(tmp_path)))


def test_windows_presets_dicom_header_and_errors(tmp_path: Path) -> None:
    arr = images.load(ImageRef(CT_SMALL.path, window="lung"))
    assert arr.min() >= 0 and arr.max() <= 1
    assert images.WINDOW_PRESETS["lung"].apply(np.array([-1350.0, -600.0, 150.0, 900.0])).tolist() == [0, 0.5, 1, 1]
    custom = images.load(ImageRef(CT_SMALL.path, window="40,400"))
    assert np.array_equal(custom, images.load(ImageRef(CT_SMALL.path, window="soft-tissue")))
    mr = images.read(ImageRef("pkg:pydicom/MR_small.dcm", window="dicom"))
    center, width = mr.meta["dicom_window"]
    raw = images.load(ImageRef("pkg:pydicom/MR_small.dcm"))
    assert np.allclose(mr.array, np.clip((raw - (center - width / 2)) / width, 0, 1))
    with pytest.raises(SampleError, match="no WindowCenter"):
        images.load(ImageRef(CT_SMALL.path, window="dicom"))
    for bad in ("lungs", "10", "0,-5", "a,b"):
        with pytest.raises(UsageError, match="window"):
            images.parse_window(bad)
    assert images.parse_window("none") is None and images.parse_window(None) is None


def test_monochrome1_is_inverted_so_dense_tissue_is_bright(tmp_path: Path) -> None:
    ds = pydicom.dcmread(images.resolve(CT_SMALL))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    normal = images.load(CT_SMALL)
    inverted = images.load(ImageRef("m1.dcm", "2d", str(tmp_path)))
    assert np.allclose(inverted, normal.max() + normal.min() - normal)


def test_paths_may_not_leave_the_data_root_unless_allowed(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(outside / "x.png")
    for path in ("../outside/x.png", str(outside / "x.png"), "a/../../outside/x.png"):
        with pytest.raises(SampleError, match="outside the data root"):
            images.load(ImageRef(path, "2d", str(root)))
        assert images.load(ImageRef(path, "2d", str(root), allow_outside_root=True)).shape == (3, 4, 4)
    # A link the user placed inside the root is theirs to make: the fence is lexical.
    os.symlink(outside, root / "linked")
    assert images.load(ImageRef("linked/x.png", "2d", str(root))).shape == (3, 4, 4)
    with pytest.raises(SampleError, match="file not found"):
        images.load(ImageRef("missing.png", "2d", str(root)))
    with pytest.raises(SampleError, match="path is empty"):
        images.load(ImageRef("  ", "2d", str(root)))


def test_unreadable_image_bytes_fail_without_noise(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    with pytest.raises(SampleError, match="unreadable"):
        images.load(ImageRef("bad.png", "2d", str(tmp_path)))
    (tmp_path / "bad.dcm").write_bytes(b"\0" * 10)
    with pytest.raises(SampleError, match="unreadable DICOM"):
        images.load(ImageRef("bad.dcm", "2d", str(tmp_path)))
