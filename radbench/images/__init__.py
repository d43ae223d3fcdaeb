"""Reading the images an :class:`~radbench.types.ImageRef` points to, and preparing them for a model.

One room per job; this package re-exports the public names, so ``from radbench import images`` and
``images.load(ref)`` keep working for adapters and user callables:

- :mod:`~radbench.images.paths`: where a reference points (sandboxed to its data root) and a
  SHA-256 of the bytes there, for provenance.
- :mod:`~radbench.images.windows`: intensity windows (``lung``, ``CENTER,WIDTH``, ``dicom``).
- :mod:`~radbench.images.readers`: PNG/JPEG, ``.npy``, NIfTI, DICOM and DICOM series to float32
  arrays, channels first; a file that cannot be used raises :class:`~radbench.errors.SampleError`.
- :mod:`~radbench.images.preprocessing`: the generic :class:`Preprocess` pipeline (scale, geometry,
  normalisation, slice choice) whose fingerprint goes into ``results.json``. The presets themselves
  live with the adapters (``models/*.py``), which hand them to the runner as their ``spec``.
- :mod:`~radbench.images.cache`: the cache the runner fills for the next batch; :func:`prepare`
  is the one call an adapter makes per image.
- :mod:`~radbench.images.depth`: RadFM's shared-depth rule (:func:`radfm_stack`).
"""

from radbench.images.depth import RADFM_DEPTHS, radfm_stack, radfm_target_depth, resize_nearest
from radbench.images.paths import check, file_sha256, resolve, series_files
from radbench.images.cache import PREFETCH_BYTES, prefetch, prepare
from radbench.images.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PIPELINE_VERSION,
    Prepared,
    Preprocess,
    SlicePolicy,
    describe_input,
    prepare_uncached,
)
from radbench.images.readers import READERS, SUFFIXES, LoadedImage, Reader, load, loader_name, read, volume_depth
from radbench.images.windows import WINDOW_PRESETS, Window, parse_window

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "PIPELINE_VERSION", "PREFETCH_BYTES",
    "RADFM_DEPTHS", "READERS", "SUFFIXES", "WINDOW_PRESETS", "LoadedImage", "Prepared", "Preprocess", "Reader",
    "SlicePolicy", "Window", "check", "describe_input", "file_sha256", "load", "loader_name", "parse_window",
    "prefetch", "prepare", "prepare_uncached", "radfm_stack", "radfm_target_depth", "read", "resize_nearest",
    "resolve", "series_files", "volume_depth",
]
