"""RadFM's depth rule: every image of a sample is resized to one shared depth before the 3D encoder."""

from __future__ import annotations

import numpy as np

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
