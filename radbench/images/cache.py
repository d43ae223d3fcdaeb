"""A small cache of images prepared ahead of time, so reading the next batch overlaps the model's work."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence

from radbench.errors import SampleError
from radbench.images.preprocessing import Prepared, Preprocess, prepare_uncached
from radbench.types import ImageRef


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
            value = prepare_uncached(ref, spec)
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
    return ready if ready is not None else prepare_uncached(ref, spec)
