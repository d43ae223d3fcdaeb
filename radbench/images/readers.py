"""Readers: PNG/JPEG (Pillow), ``.npy``, NIfTI, DICOM files and DICOM series folders.

:func:`read` returns a float32 array, channels first: ``(C, H, W)`` for 2D and ``(C, H, W, D)`` for
3D, with intensities as stored (DICOM rescale slope/intercept applied), or in ``[0, 1]`` when the
reference carries an intensity window. A file that cannot be used raises
:class:`~radbench.errors.SampleError` naming the file, so the runner counts a failed sample instead of
feeding the model noise (RadFM's own loader silently substitutes random noise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from radbench import safe_io
from radbench.errors import SampleError
from radbench.images.paths import check, series_files
from radbench.images.windows import Window, parse_window
from radbench.types import ImageRef


@dataclass(frozen=True)
class LoadedImage:
    """Pixels plus what preprocessing needs to know about them.

    ``value_range`` is the scale the values live on when it is fixed by the format (``(0, 255)`` for
    8-bit PNG/JPEG, ``(0, 1)`` after a window); ``None`` means "as measured" (HU, MR signal), which
    preprocessing rescales by min-max. ``meta`` holds format details (DICOM window, inversion, and
    ``pil_mode``, the Pillow mode of a PNG/JPEG, which decides LLaVA-Med's pad colour).

    ``wide`` keeps a PNG/TIFF's pixels as stored when they are wider than 8 bits (Pillow modes
    ``I;16``, ``I``, ``F``): ``array`` holds them after Pillow's ``convert("RGB")``, which clips
    at 255, as the original pipelines that convert first see them; open_clip converts only after
    resizing and cropping, so its preset starts from ``wide`` instead.
    """

    array: np.ndarray
    value_range: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    wide: np.ndarray | None = None


Reader = Callable[[Path, ImageRef], LoadedImage]

# Pillow modes with more than 8 bits per sample, all single-channel (16-bit PNGs open as ``I;16``, or
# ``I`` in older Pillow); ``convert("RGB")`` clips them to 0..255.
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _load_pil(path: Path, ref: ImageRef) -> LoadedImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            safe_io.image_pixels_ok(*im.size, where=f"image {path}")
            mode = im.mode
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
            wide = np.array(im) if mode in WIDE_MODES else None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SampleError(f"image {path}: unreadable ({exc.__class__.__name__}: {exc})") from exc
    return LoadedImage(arr.transpose(2, 0, 1), (0.0, 255.0), {"pil_mode": mode}, wide)


def _load_npy(path: Path, ref: ImageRef) -> LoadedImage:
    try:
        problem = safe_io.npy_header_problem(path)
    except (OSError, ValueError) as exc:  # gone, not a regular file, over the size limit
        raise SampleError(f"image {path}: unreadable .npy ({exc})") from exc
    if problem:
        raise SampleError(f"image {path}: {problem}")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SampleError(f"image {path}: unreadable .npy ({exc})") from exc
    # RadFM's Radiopaedia files hold every scan of a case: (S, 3, H, W, D).
    meta: dict[str, Any] = {}
    if arr.ndim == 5:
        index = ref.index or 0
        if not 0 <= index < arr.shape[0]:
            raise SampleError(f"image {path}: scan index {index} out of range (file has {arr.shape[0]})")
        arr = arr[index]
        meta["case_file"] = True
    try:
        if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[0] in (1, 3)):
            return LoadedImage(np.asarray(arr, dtype=np.float32), None, meta)
        if arr.ndim in (2, 3):
            return LoadedImage(np.asarray(arr, dtype=np.float32)[None], None, meta)
    except (OSError, ValueError) as exc:  # a truncated file fails when its pages are read
        raise SampleError(f"image {path}: unreadable .npy ({exc})") from exc
    raise SampleError(f"image {path}: unsupported array shape {tuple(arr.shape)}")


def _nifti_depth_axis(img: Any) -> int:
    import nibabel as nib

    ornt = nib.orientations.io_orientation(img.affine)
    return int(np.nonzero(ornt[:, 0] == 2)[0][0]) if img.ndim >= 3 else -1


def _load_nifti(path: Path, ref: ImageRef) -> LoadedImage:
    """NIfTI, reoriented to RAS and shown as axial slices in radiological convention.

    Rows run anterior to posterior and columns patient-right to patient-left (how a radiologist views
    an axial slice), whatever the file's storage order, so the same anatomy reaches a model the same
    way from any scanner's NIfTI.
    """
    import nibabel as nib

    try:
        img = nib.load(str(path))
        if len(img.shape) >= 3:
            img = nib.as_closest_canonical(img)
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for a bad header or truncated data
        raise SampleError(f"image {path}: unreadable NIfTI ({exc.__class__.__name__}: {exc})") from exc
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise SampleError(f"image {path}: NIfTI with {data.ndim} dimensions is not an image or volume")
    if data.ndim == 3:
        data = np.ascontiguousarray(np.flip(data, (0, 1)).transpose(1, 0, 2))
    return LoadedImage(data[None])


def _dicom_pixels(ds: Any, name: str) -> np.ndarray:
    try:
        data = ds.pixel_array.astype(np.float32)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    except Exception as exc:  # pydicom raises many types for truncated or malformed pixel data
        raise SampleError(f"image {name}: unreadable DICOM pixel data ({exc.__class__.__name__}: {exc})") from exc
    return data * slope + intercept


def _first(value: Any) -> float:
    """A DICOM number that may be multi-valued (WindowCenter often is): its first value."""
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        value = value[0]
    return float(value)


def _dicom_meta(ds: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if str(getattr(ds, "PhotometricInterpretation", "")) == "MONOCHROME1":
        meta["invert"] = True
    center, width = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if center is not None and width is not None:
        try:
            meta["dicom_window"] = (_first(center), _first(width))
        except (TypeError, ValueError, IndexError):
            pass  # an unparsable window tag only matters if the user asks for window=dicom
    return meta


def _read_dicom(path: Path) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(str(path))
    except Exception as exc:  # InvalidDicomError, EOFError, struct errors on truncation
        raise SampleError(f"image {path}: unreadable DICOM ({exc.__class__.__name__}: {exc})") from exc


def _load_dicom(path: Path, ref: ImageRef) -> LoadedImage:
    ds = _read_dicom(path)
    data = _dicom_pixels(ds, str(path))
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    colour = int(getattr(ds, "SamplesPerPixel", 1) or 1) > 1
    if frames > 1 and colour:  # (F, H, W, 3) -> (3, H, W, F)
        arr = data.transpose(3, 1, 2, 0)
    elif frames > 1:  # (F, H, W) -> (1, H, W, F)
        arr = np.moveaxis(data, 0, -1)[None]
    elif colour:  # (H, W, 3) -> (3, H, W)
        arr = data.transpose(2, 0, 1)
    else:
        arr = data[None]
    return LoadedImage(np.ascontiguousarray(arr), None, _dicom_meta(ds))


def _slice_position(ds: Any) -> float | None:
    """Position of a slice along its normal (ImagePositionPatient projected on row x column)."""
    position = getattr(ds, "ImagePositionPatient", None)
    orientation = getattr(ds, "ImageOrientationPatient", None)
    if position is None:
        return None
    pos = np.array([float(v) for v in position])
    if orientation is not None and len(orientation) == 6:
        o = np.array([float(v) for v in orientation])
        return float(pos @ np.cross(o[:3], o[3:]))
    return float(pos[2])


def _load_dicom_series(path: Path, ref: ImageRef) -> LoadedImage:
    """A folder of single-frame slices of one series, stacked to ``(1, H, W, D)``.

    Slices are ordered by ImagePositionPatient along the slice normal, then InstanceNumber (then file
    name); rescale slope/intercept are applied per slice, since they may differ between slices.
    """
    files = series_files(path)
    if not files:
        raise SampleError(f"image {path}: empty DICOM series folder")
    datasets = [(f, _read_dicom(f)) for f in files]
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for _, ds in datasets}
    if len(series) > 1:
        raise SampleError(f"image {path}: folder mixes {len(series)} DICOM series; give each its own folder")
    positions = [_slice_position(ds) for _, ds in datasets]
    use_position = all(p is not None for p in positions)

    def order(item: tuple[int, tuple[Path, Any]]) -> tuple[float, int, str]:
        i, (f, ds) = item
        number = int(getattr(ds, "InstanceNumber", 0) or 0)
        return (positions[i] if use_position else 0.0, number, f.name)  # type: ignore[return-value]

    ordered = [pair for _, pair in sorted(enumerate(datasets), key=order)]
    slices = []
    for f, ds in ordered:
        if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1 or int(getattr(ds, "SamplesPerPixel", 1) or 1) > 1:
            raise SampleError(f"image {f}: a series folder must hold single-frame greyscale slices")
        pixels = _dicom_pixels(ds, str(f))
        if slices and pixels.shape != slices[0].shape:
            raise SampleError(f"image {f}: slice shape {pixels.shape} differs from the series' {slices[0].shape}")
        slices.append(pixels)
    meta = _dicom_meta(ordered[0][1])
    meta["slice_order"] = "ImagePositionPatient" if use_position else "InstanceNumber"
    return LoadedImage(np.stack(slices, axis=-1)[None], None, meta)


READERS: dict[str, Reader] = {
    "pil": _load_pil,
    "npy": _load_npy,
    "nifti": _load_nifti,
    "dicom": _load_dicom,
    "dicom-series": _load_dicom_series,
}

SUFFIXES = {
    ".png": "pil",
    ".jpg": "pil",
    ".jpeg": "pil",
    ".bmp": "pil",
    ".tif": "pil",
    ".tiff": "pil",
    ".npy": "npy",
    ".nii": "nifti",
    ".gz": "nifti",
    ".dcm": "dicom",
}


def loader_name(ref: ImageRef, path: Path) -> str:
    if ref.loader != "auto":
        return ref.loader
    if path.is_dir():
        return "dicom-series"
    return SUFFIXES.get(path.suffix.lower(), "dicom")


def read(ref: ImageRef) -> LoadedImage:
    """Read the image or volume behind ``ref`` (window applied); raise SampleError when unusable."""
    path = check(ref)
    name = loader_name(ref, path)
    if name not in READERS:
        raise SampleError(f"image {ref.path}: unknown loader {name!r}; available: {', '.join(READERS)}")
    loaded = READERS[name](path, ref)
    arr = loaded.array
    if arr.size == 0:
        raise SampleError(f"image {ref.path}: empty image (shape {tuple(arr.shape)})")
    if not np.isfinite(arr).all():
        raise SampleError(f"image {ref.path}: contains NaN or infinite values")
    expected = 3 if ref.kind == "2d" else 4
    if arr.ndim != expected:
        raise SampleError(
            f"image {ref.path}: declared {ref.kind} but has shape {tuple(arr.shape)} "
            f"(expected {expected} dimensions, channels first)"
        )
    value_range = loaded.value_range
    window = parse_window(ref.window)
    if window == "dicom":
        if "dicom_window" not in loaded.meta:
            raise SampleError(f"image {ref.path}: window=dicom, but the file has no WindowCenter/WindowWidth")
        window = Window(*loaded.meta["dicom_window"])
    if isinstance(window, Window):
        arr, value_range = window.apply(arr), (0.0, 1.0)
    if loaded.meta.get("invert"):  # MONOCHROME1: low values are bright; flip so bone is bright
        low, high = value_range or (float(arr.min()), float(arr.max()))
        arr = (low + high) - arr
    # a window rescales ``array``; ``wide`` would then describe other pixels, so it is dropped
    return LoadedImage(arr, value_range, loaded.meta, loaded.wide if window is None else None)


def load(ref: ImageRef) -> np.ndarray:
    """The pixels behind ``ref`` (see :func:`read`)."""
    return read(ref).array


def volume_depth(ref: ImageRef) -> int | None:
    """Number of slices of a 3D reference, from its header only (``None`` if it cannot be told)."""
    try:
        path = check(ref)
        name = loader_name(ref, path)
        if name == "npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            return int(shape[-1]) if len(shape) >= 3 else None
        if name == "nifti":
            import nibabel as nib

            img = nib.load(str(path))
            axis = _nifti_depth_axis(img)
            return int(img.shape[axis]) if axis >= 0 else None
        if name == "dicom-series":
            return len(series_files(path))
        if name == "dicom":
            import pydicom

            return int(getattr(pydicom.dcmread(str(path), stop_before_pixels=True), "NumberOfFrames", 1) or 1)
    except Exception:  # describing an input must never fail a run; loading it reports the real error
        return None
    return None
