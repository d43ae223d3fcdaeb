"""Preparing an image for a model: a declared, deterministic :class:`Preprocess` (intensity scale,
resize/pad geometry, normalisation, slice choice for 2D-only models) whose fingerprint goes into
``results.json``.

The pipeline is generic; each adapter declares its own preset next to its model code. Nothing here
imports torch: adapters turn the returned arrays into tensors themselves.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any, Literal

import numpy as np

from radbench.errors import SampleError, UsageError
from radbench.images.paths import resolve
from radbench.images.readers import WIDE_MODES, LoadedImage, read, volume_depth
from radbench.types import ImageRef, stable_hash

# Bump when any reader or preprocessing step changes its output: it is part of every fingerprint.
PIPELINE_VERSION = "1"


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

    The order of the original pipelines, which matters for greyscale and 16-bit files:

    - ``rgb``: when Pillow's ``convert("RGB")`` runs. ``first`` (RadFM, MedVInT and transformers'
      CLIPImageProcessor convert before anything else) or ``last`` (open_clip's ``_convert_to_rgb``
      after resize and crop, so a 16-bit file is resized on its 16-bit values and clipped at 255
      afterwards). 8-bit files give the same pixels either way; ``pad-square`` always converts first.
    - ``grey_pad``: a single-channel file (Pillow mode ``L``, or wider than 8 bits) is padded with the
      grey ``int(255 * sum(mean) / len(mean))`` instead of the mean colour (LLaVA's ``process_images``).
    - ``crop_offset``: the centre crop's top/left, ``round`` (torchvision's ``CenterCrop``) or
      ``floor`` (transformers' ``center_crop``).
    """

    name: str
    size: int
    resize: Literal["squash", "shortest-edge-crop", "pad-square"] = "squash"
    interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    volume: Literal["radfm", "slices"] = "slices"
    slices: SlicePolicy = SlicePolicy()
    rgb: Literal["first", "last"] = "first"
    grey_pad: bool = False
    crop_offset: Literal["round", "floor"] = "round"

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


def _pad_fill(spec: Preprocess, eight_bit: bool, single_channel: bool) -> np.ndarray:
    """The pad colour in [0, 1]: LLaVA pastes onto ``tuple(int(x * 255) for x in image_mean)``, or for a
    mode-L file onto the grey ``int(255 * sum(image_mean) / len(image_mean))``."""
    mean = spec.mean or (0.0, 0.0, 0.0)
    if spec.grey_pad and single_channel:
        return np.full(3, int(255 * sum(mean) / len(mean)) / 255, dtype=np.float32)
    fill = np.array(mean, dtype=np.float32)
    return np.floor(fill * 255) / 255 if eight_bit else fill


def _shortest_edge(h: int, w: int, spec: Preprocess) -> tuple[int, int, int, int]:
    """``(new_h, new_w, top, left)``: shortest side to ``spec.size`` (``int`` of the long side, as both
    torchvision's ``Resize(int)`` and transformers compute it), then the centre crop's offsets."""
    size = spec.size
    new_h, new_w = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    if spec.crop_offset == "floor":
        return new_h, new_w, (new_h - size) // 2, (new_w - size) // 2
    return new_h, new_w, int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))


def _geometry(img: np.ndarray, spec: Preprocess, eight_bit: bool, single_channel: bool = False) -> np.ndarray:
    _, h, w = img.shape
    size = spec.size
    if spec.resize == "pad-square" and h != w:
        side = max(h, w)
        fill = _pad_fill(spec, eight_bit, single_channel)
        canvas = np.broadcast_to(fill[:, None, None], (3, side, side)).copy()
        top, left = (side - h) // 2, (side - w) // 2  # LLaVA jitters by 0/1 px at random; radbench does not
        canvas[:, top : top + h, left : left + w] = img
        img, h, w = canvas, side, side
    if spec.resize == "squash":
        return _resize(img, size, size, spec.interpolation, eight_bit)
    new_h, new_w, top, left = _shortest_edge(h, w, spec)
    img = _resize(img, new_w, new_h, spec.interpolation, eight_bit)
    return img[:, top : top + size, left : left + size]


def _wide_then_rgb(wide: np.ndarray, spec: Preprocess) -> np.ndarray:
    """open_clip's order for a file wider than 8 bits: resize and crop the stored values with Pillow
    in the file's own mode, then ``convert("RGB")`` (which clips at 255), then ``ToTensor``'s 1/255."""
    from PIL import Image

    pil = Image.fromarray(wide)
    resample = _PIL_FILTERS[spec.interpolation]
    if spec.resize == "squash":
        pil = pil.resize((spec.size, spec.size), resample)
    else:
        new_h, new_w, top, left = _shortest_edge(pil.height, pil.width, spec)
        pil = pil.resize((new_w, new_h), resample).crop((left, top, left + spec.size, top + spec.size))
    return np.asarray(pil.convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0


def _normalise(img: np.ndarray, spec: Preprocess) -> np.ndarray:
    if spec.mean is None or spec.std is None:
        return img.astype(np.float32)
    mean = np.array(spec.mean, dtype=np.float32).reshape(-1, *([1] * (img.ndim - 1)))
    std = np.array(spec.std, dtype=np.float32).reshape(-1, *([1] * (img.ndim - 1)))
    return ((img - mean) / std).astype(np.float32)


def _prepare_2d(img: np.ndarray, spec: Preprocess, eight_bit: bool, single_channel: bool = False) -> np.ndarray:
    return _normalise(_geometry(_rgb(img), spec, eight_bit, single_channel), spec)


def _prepare_file_2d(loaded: LoadedImage, spec: Preprocess) -> np.ndarray:
    """A 2D file in the order its model's pipeline converts, pads, resizes and normalises it."""
    if spec.rgb == "last" and spec.resize != "pad-square" and loaded.wide is not None:
        return _normalise(_wide_then_rgb(loaded.wide, spec), spec)
    eight_bit = loaded.value_range == (0.0, 255.0)
    single_channel = loaded.meta.get("pil_mode") in ("L", *WIDE_MODES)
    return _prepare_2d(_unit(loaded.array, loaded.value_range), spec, eight_bit, single_channel)


def prepare_uncached(ref: ImageRef, spec: Preprocess) -> Prepared:
    """Read ``ref`` and apply ``spec`` (see :func:`radbench.images.cache.prepare`, which adds the cache)."""
    loaded = read(ref)
    arr = loaded.array
    eight_bit = loaded.value_range == (0.0, 255.0)
    if ref.kind == "2d":
        return Prepared(_prepare_file_2d(loaded, spec), {})
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
