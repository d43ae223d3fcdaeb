"""Intensity windows: which slice of a scan's value range becomes ``[0, 1]`` when it is read."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from radbench.errors import UsageError


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
