"""Synthetic phantoms whose findings are known by construction.

Two kinds, both drawn with plain numpy geometry and a seeded PCG64 noise field, so the same
parameters give the same pixels on every machine:

* ``cxr``: a frontal chest radiograph (256 x 256, 8-bit PNG) with body, lungs, heart, and optional
  pleural effusion (left/right/both, a height in pixels), lung nodule (side, diameter in mm at
  1.4 mm per pixel) and cardiomegaly (cardiothoracic ratio). Radiological convention: the patient's
  right is on the image's left.
* ``ct``: RadFM's Radiopaedia ``.npy`` layout ``(S, 3, H, W, D)`` (S scans, grey replicated to 3
  channels), 64 x 64 x 16 voxels of 5 mm, uint8. A chest CT with nodules (side, diameter in mm) or a
  posterior pleural effusion, or a head CT with a hyperdense haemorrhage; a second scan, when asked
  for, is a post-contrast series in which lesions are brighter.

These are a demo, not a benchmark: they exist so radbench runs end to end offline with ground truth
that is true of its images.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CXR_SIZE = 256
CXR_MM_PER_PIXEL = 1.4
CT_SIZE = 64
CT_DEPTH = 16
CT_MM_PER_VOXEL = 5.0

# Lung centres in image columns: patient's right lung is on the image's left.
CXR_LUNG_X = {"right": 80, "left": 176}
CT_LUNG_X = {"right": 20, "left": 44}


def _ellipse(h: int, w: int, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def cxr(params: dict[str, Any], seed: int) -> np.ndarray:
    """A frontal chest radiograph as an 8-bit grey image."""
    n = CXR_SIZE
    img = np.zeros((n, n), np.float32)
    img[_ellipse(n, n, 140, 128, 115, 110)] = 110
    lungs = {side: _ellipse(n, n, 120, x, 75, 38) for side, x in CXR_LUNG_X.items()}
    for mask in lungs.values():
        img[mask] = 35
    effusion = params.get("effusion")
    height = params.get("effusion_px", 30)
    for side in ("left", "right"):
        if effusion in (side, "bilateral"):
            rows = np.arange(n)[:, None] >= 195 - height
            img[lungs[side] & rows] = 140
    half_width = params.get("ctr", 0.42) * 172 / 2
    img[_ellipse(n, n, 170, 140, 40, half_width)] = 160
    if params.get("nodule"):
        radius = params["nodule_mm"] / CXR_MM_PER_PIXEL / 2
        img[_ellipse(n, n, 100, CXR_LUNG_X[params["nodule"]], radius, radius)] = 210
    rng = np.random.default_rng(seed)
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def _sphere(cz: float, cy: float, cx: float, r: float) -> np.ndarray:
    z, y, x = np.mgrid[0:CT_DEPTH, 0:CT_SIZE, 0:CT_SIZE]
    return (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r**2


def ct(params: dict[str, Any], seed: int) -> np.ndarray:
    """A CT volume in RadFM's ``(S, 3, H, W, D)`` layout."""
    d, n = CT_DEPTH, CT_SIZE
    region = params["region"]
    base = np.zeros((d, n, n), np.float32)
    body = np.broadcast_to(_ellipse(n, n, 32, 32, 26, 30), (d, n, n))
    lesions: list[np.ndarray] = []
    if region == "chest":
        base[body] = 100
        for side, x in CT_LUNG_X.items():
            lung = np.broadcast_to(_ellipse(n, n, 30, x, 18, 10), (d, n, n))
            base[lung] = 20
            if params.get("effusion") in (side, "bilateral"):
                base[lung & (np.arange(n)[None, :, None] >= 40)] = 95
        for i, (side, mm) in enumerate(params.get("nodules", [])):
            r = mm / CT_MM_PER_VOXEL / 2
            lesions.append(_sphere(4 + 7 * (i % 2), 24 + 8 * (i // 2), CT_LUNG_X[side], max(r, 1.0)))
    else:
        base[np.broadcast_to(_ellipse(n, n, 32, 32, 28, 24), (d, n, n))] = 250
        base[np.broadcast_to(_ellipse(n, n, 32, 32, 25, 21), (d, n, n))] = 90
        side = params["haemorrhage"]
        r = params["haemorrhage_mm"] / CT_MM_PER_VOXEL / 2
        lesions.append(_sphere(8, 30, 22 if side == "right" else 42, max(r, 1.0)))
    rng = np.random.default_rng(seed)
    scans = []
    for scan in range(params.get("scans", 1)):
        vol = base.copy()
        for mask in lesions:
            vol[mask] = 170 + 50 * scan
        vol += rng.normal(0, 3, vol.shape).astype(np.float32)
        grey = np.clip(vol, 0, 255).astype(np.uint8).transpose(1, 2, 0)  # (H, W, D)
        scans.append(np.repeat(grey[None], 3, axis=0))
    return np.stack(scans)


GENERATORS = {"cxr": cxr, "ct": ct}
