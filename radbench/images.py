"""Reading the images an :class:`~radbench.types.ImageRef` points to.

Every loader returns a float32 array, channels first: ``(C, H, W)`` for 2D and ``(C, H, W, D)`` for
3D, with intensities as stored (adapters apply their own model's preprocessing). A file that cannot
be read raises :class:`~radbench.errors.SampleError` naming the file, so the runner counts a failed
sample instead of feeding the model noise (RadFM's own loader silently substitutes random noise).
"""

from __future__ import annotations

import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from radbench.errors import SampleError
from radbench.types import ImageRef

Loader = Callable[[Path, ImageRef], np.ndarray]


def resolve(ref: ImageRef) -> Path:
    """The local file behind a reference.

    ``pkg:NAME/REL`` resolves inside the installed package NAME (the real sample scans pydicom and
    nibabel ship); relative paths resolve against the reference's root. A relative path that climbs
    out of its root is refused: a dataset file must not make radbench read arbitrary files.
    """
    if ref.path.startswith("pkg:"):
        package, _, rel = ref.path[4:].partition("/")
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise SampleError(f"image {ref.path}: package {package!r} is not installed")
        for base in spec.submodule_search_locations:
            hits = sorted(Path(base).rglob(rel)) if "/" not in rel else [Path(base) / rel]
            hits = [h for h in hits if h.is_file()]
            if hits:
                return hits[0]
        raise SampleError(f"image {ref.path}: {rel!r} not found inside package {package!r}")
    path = Path(ref.path)
    if path.is_absolute() or ref.root is None:
        return path
    root = Path(ref.root).resolve()
    full = (root / path).resolve()
    if not full.is_relative_to(root):
        raise SampleError(f"image {ref.path}: path escapes the data root {root}")
    return full


def _load_pil(path: Path, ref: ImageRef) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise SampleError(f"image {path}: unreadable ({exc.__class__.__name__}: {exc})") from exc
    return arr.transpose(2, 0, 1)


def _load_npy(path: Path, ref: ImageRef) -> np.ndarray:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise SampleError(f"image {path}: unreadable .npy ({exc})") from exc
    # RadFM's Radiopaedia files hold every scan of a case: (S, 3, H, W, D).
    if arr.ndim == 5:
        index = ref.index or 0
        if not 0 <= index < arr.shape[0]:
            raise SampleError(f"image {path}: scan index {index} out of range (file has {arr.shape[0]})")
        arr = arr[index]
    if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[0] in (1, 3)):
        return np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3:
        return np.asarray(arr, dtype=np.float32)[None]
    if arr.ndim == 2:
        return np.asarray(arr, dtype=np.float32)[None]
    raise SampleError(f"image {path}: unsupported array shape {tuple(arr.shape)}")


def _load_nifti(path: Path, ref: ImageRef) -> np.ndarray:
    import nibabel as nib

    try:
        data = np.asarray(nib.load(str(path)).get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for a bad header or truncated data
        raise SampleError(f"image {path}: unreadable NIfTI ({exc.__class__.__name__}: {exc})") from exc
    if data.ndim == 4:
        data = data[..., 0]
    if data.ndim not in (2, 3):
        raise SampleError(f"image {path}: NIfTI with {data.ndim} dimensions is not an image or volume")
    return data[None]


def _load_dicom(path: Path, ref: ImageRef) -> np.ndarray:
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        data = ds.pixel_array.astype(np.float32)
        slope = float(getattr(ds, "RescaleSlope", 1) or 1)
        intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    except Exception as exc:  # pydicom raises many types for truncated or malformed files
        raise SampleError(f"image {path}: unreadable DICOM ({exc.__class__.__name__}: {exc})") from exc
    data = data * slope + intercept
    if data.ndim == 3 and data.shape[-1] != 3:  # multi-frame: (frames, H, W) -> (1, H, W, D)
        return np.moveaxis(data, 0, -1)[None]
    if data.ndim == 3:  # RGB
        return data.transpose(2, 0, 1)
    return data[None]


LOADERS: dict[str, Loader] = {
    "pil": _load_pil,
    "npy": _load_npy,
    "nifti": _load_nifti,
    "dicom": _load_dicom,
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
    return SUFFIXES.get(path.suffix.lower(), "dicom")


def load(ref: ImageRef) -> np.ndarray:
    """Read the image or volume behind ``ref``; raise :class:`SampleError` when it cannot be used."""
    path = resolve(ref)
    if not path.is_file():
        raise SampleError(f"image {ref.path}: file not found ({path})")
    name = loader_name(ref, path)
    if name not in LOADERS:
        raise SampleError(f"image {ref.path}: unknown loader {name!r}; available: {', '.join(LOADERS)}")
    arr = LOADERS[name](path, ref)
    if not np.isfinite(arr).all():
        raise SampleError(f"image {ref.path}: contains NaN or infinite values")
    expected = 3 if ref.kind == "2d" else 4
    if arr.ndim != expected:
        raise SampleError(
            f"image {ref.path}: declared {ref.kind} but has shape {tuple(arr.shape)} "
            f"(expected {expected} dimensions, channels first)"
        )
    return arr


@lru_cache(maxsize=4096)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(ref: ImageRef) -> str | None:
    """SHA-256 of the file bytes, for provenance in prediction records; ``None`` if unreadable."""
    try:
        path = resolve(ref)
        stat = path.stat()
    except (SampleError, OSError):
        return None
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)
