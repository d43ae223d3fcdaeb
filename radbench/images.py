"""Reading the images an :class:`~radbench.types.ImageRef` points to, and preparing them for a model.

Reading (:func:`read`, :func:`load`) returns a float32 array, channels first: ``(C, H, W)`` for 2D and
``(C, H, W, D)`` for 3D, with intensities as stored (DICOM rescale slope/intercept applied), or in
``[0, 1]`` when the reference carries an intensity window. A file that cannot be used raises
:class:`~radbench.errors.SampleError` naming the file, so the runner counts a failed sample instead of
feeding the model noise (RadFM's own loader silently substitutes random noise).

Preparing (:func:`prepare`, :func:`radfm_stack`) applies a model's declared :class:`Preprocess`: a
fixed, deterministic pipeline (RadFM's test-time ``RandomResizedCrop`` becomes a plain resize) whose
:meth:`Preprocess.fingerprint` goes into ``results.json``. 2D-only models get 3D studies through a
:class:`SlicePolicy`, whose per-image choice :func:`describe_input` reports for the prediction log.
Nothing here imports torch: adapters turn the returned arrays into tensors themselves.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from radbench import safe_io
from radbench.errors import SampleError, UsageError
from radbench.types import ImageRef, stable_hash

# Bump when any reader or preprocessing step changes its output: it is part of every fingerprint.
PIPELINE_VERSION = "1"

# ---------------------------------------------------------------------------------------------------
# Where a reference points


def resolve(ref: ImageRef) -> Path:
    """The local file (or DICOM series folder) behind a reference.

    ``pkg:NAME/REL`` resolves inside the installed package NAME (the real sample scans pydicom and
    nibabel ship). Other paths resolve against the reference's root and must stay inside it, unless
    the reference allows otherwise (``--allow-outside-root``): a dataset file must not make radbench
    read arbitrary files. The check is lexical (``..`` is collapsed, symlinks are not followed), so a
    data root may link to image folders elsewhere on purpose.
    """
    if ref.path.startswith("pkg:"):
        package, _, rel = ref.path[4:].partition("/")
        try:  # only a top-level name: find_spec imports the parents of a dotted one
            spec = importlib.util.find_spec(package) if package.isidentifier() else None
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            raise SampleError(f"image {ref.path}: package {package!r} is not installed")
        for base in spec.submodule_search_locations:
            hits = sorted(Path(base).rglob(rel)) if "/" not in rel else [Path(os.path.normpath(Path(base) / rel))]
            hits = [h for h in hits if h.is_file()]
            if hits:
                if not ref.allow_outside_root and not hits[0].is_relative_to(os.path.abspath(base)):
                    raise SampleError(f"image {ref.path}: resolves outside the package {package!r} "
                                      "(pass --allow-outside-root)")
                return hits[0]
        raise SampleError(f"image {ref.path}: {rel!r} not found inside package {package!r}")
    if not ref.path.strip():
        raise SampleError("image path is empty")
    path = Path(ref.path)
    if ref.root is None:
        return path
    root = Path(os.path.abspath(ref.root))
    full = Path(os.path.normpath(root / path))
    if not ref.allow_outside_root and not full.is_relative_to(root):
        raise SampleError(
            f"image {ref.path}: resolves outside the data root {root} "
            "(map it with --image-root OLD=NEW, or pass --allow-outside-root)"
        )
    return full


def check(ref: ImageRef) -> Path:
    """The resolved path if it exists (file or series folder); reads no pixels. Raises SampleError."""
    path = resolve(ref)
    try:
        if not path.is_dir():
            safe_io.regular_file(path)
    except FileNotFoundError:
        raise SampleError(f"image {ref.path}: file not found ({path})") from None
    except (OSError, ValueError) as exc:  # a FIFO, a device, an oversized file, a NUL byte
        raise SampleError(f"image {ref.path!r}: {exc}") from None
    return path


# ---------------------------------------------------------------------------------------------------
# Intensity windows


@dataclass(frozen=True)
class Window:
    """A linear intensity window: ``center ± width/2`` maps to ``[0, 1]``, values outside are clipped."""

    center: float
    width: float

    def apply(self, arr: np.ndarray) -> np.ndarray:
        low = self.center - self.width / 2
        return np.clip((arr - low) / self.width, 0.0, 1.0).astype(np.float32)


# Common CT presets (Hounsfield units), as (center, width).
WINDOW_PRESETS: dict[str, Window] = {
    "lung": Window(-600, 1500),
    "mediastinum": Window(50, 350),
    "soft-tissue": Window(40, 400),
    "liver": Window(60, 160),
    "bone": Window(400, 1800),
    "brain": Window(40, 80),
    "subdural": Window(75, 215),
    "stroke": Window(40, 40),
}


def parse_window(text: str | None) -> Window | Literal["dicom"] | None:
    """``None``/``none``: no window; a preset name; ``dicom`` (the file's own WindowCenter/Width);
    or ``CENTER,WIDTH``. Raises :class:`UsageError` for anything else, naming the choices."""
    if text is None or text.strip().lower() in ("", "none"):
        return None
    name = text.strip().lower()
    if name == "dicom":
        return "dicom"
    if name in WINDOW_PRESETS:
        return WINDOW_PRESETS[name]
    parts = name.split(",")
    try:
        center, width = (float(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"window {text!r}: expected CENTER,WIDTH (e.g. -600,1500), 'dicom', 'none' or one of "
            f"{', '.join(WINDOW_PRESETS)}"
        ) from None
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise UsageError(f"window {text!r}: the width must be a positive number")
    return Window(center, width)


# ---------------------------------------------------------------------------------------------------
# Readers


@dataclass(frozen=True)
class LoadedImage:
    """Pixels plus what preprocessing needs to know about them.

    ``value_range`` is the scale the values live on when it is fixed by the format (``(0, 255)`` for
    8-bit PNG/JPEG, ``(0, 1)`` after a window); ``None`` means "as measured" (HU, MR signal), which
    preprocessing rescales by min-max. ``meta`` holds format details (DICOM window, inversion).
    """

    array: np.ndarray
    value_range: tuple[float, float] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[Path, ImageRef], LoadedImage]


def _load_pil(path: Path, ref: ImageRef) -> LoadedImage:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            safe_io.image_pixels_ok(*im.size, where=f"image {path}")
            arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SampleError(f"image {path}: unreadable ({exc.__class__.__name__}: {exc})") from exc
    return LoadedImage(arr.transpose(2, 0, 1), (0.0, 255.0))


def _load_npy(path: Path, ref: ImageRef) -> LoadedImage:
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


def series_files(folder: Path) -> list[Path]:
    """The files of a DICOM series folder: every regular, non-hidden file except a DICOMDIR."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR")


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
    return LoadedImage(arr, value_range, loaded.meta)


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


# ---------------------------------------------------------------------------------------------------
# Model preprocessing

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SlicePolicy:
    """Which slices of a 3D volume a 2D-only model sees, each as one 2D image.

    ``even:K`` takes K slices at the centres of K equal depth bins (``floor((i + 0.5) * D / K)``), so
    ``even:1`` is the middle slice and the often-empty first and last slices are avoided; a volume
    with fewer than K slices gives all of them. ``all`` takes every slice.
    """

    mode: Literal["even", "all"] = "even"
    k: int = 1

    @classmethod
    def parse(cls, text: str) -> "SlicePolicy":
        """``middle``, ``even:K`` or ``all``; raises UsageError otherwise."""
        name = text.strip().lower()
        if name == "middle":
            return cls("even", 1)
        if name == "all":
            return cls("all", 0)
        mode, _, k = name.partition(":")
        if mode == "even" and k.isdigit() and int(k) > 0:
            return cls("even", int(k))
        raise UsageError(f"slice policy {text!r}: expected 'middle', 'even:K' (K >= 1) or 'all'")

    def indices(self, depth: int) -> list[int]:
        if depth <= 0:
            return []
        if self.mode == "all" or self.k >= depth:
            return list(range(depth))
        return [int(math.floor((i + 0.5) * depth / self.k)) for i in range(self.k)]

    def spec(self) -> str:
        return "all" if self.mode == "all" else f"even:{self.k}"


@dataclass(frozen=True)
class Preprocess:
    """What a model needs its images to be; every field changes pixels, so all go into the fingerprint.

    - ``resize``: ``squash`` (both sides to ``size``, aspect not kept: RadFM, MedVInT),
      ``shortest-edge-crop`` (shortest side to ``size``, centre crop: CLIP/Flamingo), or
      ``pad-square`` (pad to a square with the mean colour, then resize: LLaVA-Med).
    - intensities go to ``[0, 1]`` first: 8-bit images divide by 255 (torchvision's ``ToTensor``),
      windowed images already are, other scans are min-max scaled (per volume, or over the whole
      case file for RadFM's multi-scan ``.npy``); then ``(x - mean) / std`` when ``mean`` is set.
    - ``volume``: ``radfm`` keeps a 3D scan whole (3 channels, for :func:`radfm_stack`);
      ``slices`` feeds 2D-only models the slices chosen by ``slices``.
    """

    name: str
    size: int
    resize: Literal["squash", "shortest-edge-crop", "pad-square"] = "squash"
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    volume: Literal["radfm", "slices"] = "slices"
    slices: SlicePolicy = SlicePolicy()

    def with_slices(self, policy: SlicePolicy | str) -> "Preprocess":
        """The same spec with another slice policy (adapters expose this as a model argument)."""
        return replace(self, slices=SlicePolicy.parse(policy) if isinstance(policy, str) else policy)

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["slices"] = self.slices.spec() if self.volume == "slices" else None
        out["pipeline_version"] = PIPELINE_VERSION
        out["deterministic"] = "fixed resize; no random crop, flip or jitter (RadFM's test-time RandomResizedCrop is replaced)"
        return out

    def fingerprint(self) -> str:
        return stable_hash(self.describe())


PRESETS: dict[str, Preprocess] = {
    "radfm": Preprocess("radfm", 512, "squash", "bicubic", volume="radfm"),
    "clip-224": Preprocess("clip-224", 224, "shortest-edge-crop", "bicubic", OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "llava-med-336": Preprocess("llava-med-336", 336, "pad-square", "bicubic", OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
    "medvint-512": Preprocess("medvint-512", 512, "squash", "bicubic", IMAGENET_MEAN, IMAGENET_STD),
}


@dataclass(frozen=True)
class Prepared:
    """A model-ready array and what was decided on the way (logged per sample)."""

    array: np.ndarray
    info: dict[str, Any]


@lru_cache(maxsize=64)
def _case_range(path: str, size: int, mtime_ns: int) -> tuple[float, float]:
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    return float(np.min(arr)), float(np.max(arr))


def _unit(arr: np.ndarray, value_range: tuple[float, float] | None) -> np.ndarray:
    """Scale to [0, 1] by the format's range, or by min-max (a constant image becomes zeros)."""
    low, high = value_range if value_range is not None else (float(arr.min()), float(arr.max()))
    if high <= low:
        return np.zeros_like(arr, dtype=np.float32)
    return ((arr - low) / (high - low)).astype(np.float32)


def _rgb(arr: np.ndarray) -> np.ndarray:
    if arr.shape[0] == 3:
        return arr
    if arr.shape[0] == 1:
        return np.repeat(arr, 3, axis=0)
    raise SampleError(f"cannot make 3 channels from {arr.shape[0]}")


_PIL_FILTERS = {"bicubic": 3, "bilinear": 2, "nearest": 0}


def _resize(img: np.ndarray, width: int, height: int, interpolation: str, eight_bit: bool) -> np.ndarray:
    """Resize ``(3, H, W)`` in [0, 1] with PIL, as torchvision does for PIL input.

    8-bit sources are resized as 8-bit RGB (bit-identical to ``Resize`` on the PIL image the
    original pipelines use); other sources per channel in 32-bit float, which keeps their precision,
    then clipped to [0, 1] as the 8-bit path clips bicubic overshoot.
    """
    from PIL import Image

    resample = _PIL_FILTERS[interpolation]
    if eight_bit:
        pil = Image.fromarray(np.round(img * 255).astype(np.uint8).transpose(1, 2, 0), "RGB")
        return np.asarray(pil.resize((width, height), resample), dtype=np.float32).transpose(2, 0, 1) / 255.0
    channels = [np.asarray(Image.fromarray(c.astype(np.float32), "F").resize((width, height), resample)) for c in img]
    return np.clip(np.stack(channels), 0.0, 1.0).astype(np.float32)


def _geometry(img: np.ndarray, spec: Preprocess, eight_bit: bool) -> np.ndarray:
    _, h, w = img.shape
    size = spec.size
    if spec.resize == "pad-square" and h != w:
        side = max(h, w)
        fill = np.array(spec.mean or (0.0, 0.0, 0.0), dtype=np.float32)
        if eight_bit:  # LLaVA pastes onto tuple(int(x * 255) for x in image_mean)
            fill = np.floor(fill * 255) / 255
        canvas = np.broadcast_to(fill[:, None, None], (3, side, side)).copy()
        top, left = (side - h) // 2, (side - w) // 2  # LLaVA jitters by 0/1 px at random; radbench does not
        canvas[:, top : top + h, left : left + w] = img
        img, h, w = canvas, side, side
    if spec.resize == "squash":
        return _resize(img, size, size, spec.interpolation, eight_bit)
    # shortest edge to `size` (torchvision Resize(int)), then centre crop (torchvision rounding)
    if h <= w:
        new_h, new_w = size, int(size * w / h)
    else:
        new_h, new_w = int(size * h / w), size
    img = _resize(img, new_w, new_h, spec.interpolation, eight_bit)
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return img[:, top : top + size, left : left + size]


def _normalise(img: np.ndarray, spec: Preprocess) -> np.ndarray:
    if spec.mean is None or spec.std is None:
        return img.astype(np.float32)
    mean = np.array(spec.mean, dtype=np.float32).reshape(-1, *([1] * (img.ndim - 1)))
    std = np.array(spec.std, dtype=np.float32).reshape(-1, *([1] * (img.ndim - 1)))
    return ((img - mean) / std).astype(np.float32)


def _prepare_2d(img: np.ndarray, spec: Preprocess, eight_bit: bool) -> np.ndarray:
    return _normalise(_geometry(_rgb(img), spec, eight_bit), spec)


_PREFETCHED: "OrderedDict[tuple[ImageRef, str], Prepared]" = OrderedDict()
_PREFETCH_LOCK = threading.Lock()
PREFETCH_BYTES = int(os.environ.get("RADBENCH_PREFETCH_BYTES", str(2 << 30)))


def prefetch(refs: Sequence[ImageRef], spec: Preprocess) -> None:
    """Prepare ``refs`` ahead of time (the runner calls this in a background thread for the next batch).

    Results wait in a small cache that :func:`prepare` empties as it reads from it; the cache holds
    at most ``RADBENCH_PREFETCH_BYTES`` (default 2 GiB), oldest dropped first. A reference that fails
    is left for the adapter's own call, which reports it for its sample.
    """
    key_spec = spec.fingerprint()
    for ref in refs:
        key = (ref, key_spec)
        with _PREFETCH_LOCK:
            if key in _PREFETCHED:
                continue
        try:
            value = _prepare(ref, spec)
        except SampleError:
            continue
        with _PREFETCH_LOCK:
            _PREFETCHED[key] = value
            while sum(v.array.nbytes for v in _PREFETCHED.values()) > PREFETCH_BYTES and len(_PREFETCHED) > 1:
                _PREFETCHED.popitem(last=False)


def prepare(ref: ImageRef, spec: Preprocess) -> Prepared:
    """Read ``ref`` and apply ``spec``: the one call an adapter makes per image.

    Returns ``(3, S, S)`` for a 2D image; for a 3D scan, ``(3, H, W, D)`` in [0, 1] when
    ``spec.volume == "radfm"`` (then call :func:`radfm_stack` on the sample's images), else
    ``(K, 3, S, S)``: the slices ``spec.slices`` picks, each prepared as a 2D image. Served from the
    prefetch cache when the runner prepared it already.
    """
    with _PREFETCH_LOCK:
        ready = _PREFETCHED.pop((ref, spec.fingerprint()), None)
    return ready if ready is not None else _prepare(ref, spec)


def _prepare(ref: ImageRef, spec: Preprocess) -> Prepared:
    loaded = read(ref)
    arr = loaded.array
    eight_bit = loaded.value_range == (0.0, 255.0)
    if ref.kind == "2d":
        return Prepared(_prepare_2d(_unit(arr, loaded.value_range), spec, eight_bit), {})
    value_range = loaded.value_range
    if value_range is None and loaded.meta.get("case_file"):
        path = resolve(ref)
        stat = path.stat()
        value_range = _case_range(str(path), stat.st_size, stat.st_mtime_ns)  # RadFM: min-max over the case
    vol = _rgb(_unit(arr, value_range))
    depth = vol.shape[-1]
    if spec.volume == "radfm":
        return Prepared(vol, {"depth": depth})
    picked = spec.slices.indices(depth)
    stack = np.stack([_prepare_2d(vol[..., i], spec, eight_bit) for i in picked])
    return Prepared(stack, {"depth": depth, "slices": picked, "slice_policy": spec.slices.spec()})


def describe_input(ref: ImageRef, spec: Preprocess) -> dict[str, Any]:
    """What :func:`prepare` will decide for ``ref``, from headers only (for the prediction log)."""
    if ref.kind != "3d":
        return {}
    depth = volume_depth(ref)
    if depth is None:
        return {}
    if spec.volume == "radfm":
        return {"depth": depth}
    return {"depth": depth, "slices": spec.slices.indices(depth), "slice_policy": spec.slices.spec()}


# RadFM's depth rule (radfm-radbench.md section 2): every image of a sample shares one depth.
RADFM_DEPTHS = tuple(range(4, 65, 4))


def radfm_target_depth(depths: list[int]) -> int:
    """The depth RadFM resizes all images of a sample to: the multiple of 4 in 4..64 closest to
    ``max(4, max depth of the 3D scans)``, ties to the smaller; 2D images do not count."""
    max_d = max([4, *depths])
    target = 4
    for d in RADFM_DEPTHS:
        if abs(d - max_d) < abs(target - max_d):
            target = d
    return target


def resize_nearest(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of the trailing axes, index for index as ``torch.nn.functional.
    interpolate(mode="nearest")`` computes it (``floor(out_index * float32(in / out))``)."""
    out = arr
    lead = arr.ndim - len(shape)
    for axis, size in enumerate(shape, start=lead):
        n = out.shape[axis]
        if n == size:
            continue
        scale = np.float32(n) / np.float32(size)
        idx = np.minimum(np.floor(np.arange(size, dtype=np.float32) * scale).astype(np.int64), n - 1)
        out = np.take(out, idx, axis=axis)
    return out


def radfm_stack(images: list[np.ndarray], size: int = 512) -> np.ndarray:
    """RadFM's ``stack_images``: ``(3, H, W)`` and ``(3, H, W, D)`` arrays of one sample to
    ``(S, 3, size, size, target_D)``, nearest-resized as RadFM does."""
    if not images:
        return np.zeros((1, 3, size, size, 4), dtype=np.float32)
    depth = radfm_target_depth([img.shape[-1] for img in images if img.ndim == 4])
    vols = [img[..., None] if img.ndim == 3 else img for img in images]
    return np.stack([resize_nearest(v, (size, size, depth)) for v in vols]).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# File fingerprints


@lru_cache(maxsize=4096)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with safe_io.open_regular(path) as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(ref: ImageRef) -> str | None:
    """SHA-256 of the file bytes (of each file in name order for a series folder), for provenance in
    prediction records; ``None`` if unreadable."""
    try:
        path = resolve(ref)
        if path.is_dir():
            digest = hashlib.sha256()
            for f in series_files(path):
                stat = f.stat()
                digest.update(f"{f.name}\0{_file_sha256(str(f), stat.st_size, stat.st_mtime_ns)}\0".encode())
            return digest.hexdigest()
        stat = safe_io.regular_file(path)
        return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)
    except (SampleError, OSError, ValueError):  # the sample's own read reports why
        return None
