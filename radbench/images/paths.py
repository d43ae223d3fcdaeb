"""Where an :class:`~radbench.types.ImageRef` points, and a fingerprint of the bytes found there.

Resolution is sandboxed: a dataset file must not make radbench read arbitrary files, so relative
paths stay inside their data root unless the reference allows otherwise.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from functools import lru_cache
from pathlib import Path

from radbench import safe_io
from radbench.errors import SampleError
from radbench.types import ImageRef


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


def series_files(folder: Path) -> list[Path]:
    """The files of a DICOM series folder: every regular, non-hidden file except a DICOMDIR."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name.upper() != "DICOMDIR")


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
