"""Question/answer sets released on the Hugging Face Hub as parquet (``flaviagiammarino/vqa-rad``).

The release is ``data/{train,test}-NNNNN-of-NNNNN-*.parquet`` with the columns ``image`` (the
``datasets`` Image feature: a struct of ``bytes`` and ``path``), ``question`` and ``answer``. Images
live inside the parquet, so a reader writes each distinct image once into radbench's cache, named
by its SHA-256, and the samples refer to those files (questions about one image share its study id).
Needs pyarrow (``pip install radbench[data]``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

from radbench import hub
from radbench.errors import UsageError
from radbench.tasks.datasets.common import Source, text
from radbench.tasks.datasets.formats import Format
from radbench.tasks.datasets.radfm_files import YES_NO, clean_answer
from radbench.types import Sample

COLUMNS = ("image", "question", "answer")
# The main-branch layout, then the Hub's automatic conversion (refs/convert/parquet).
PATTERNS = ("data/{split}-*.parquet", "{split}-*.parquet", "default/{split}/*.parquet")


def split_files(root: Path, split: str) -> list[Path]:
    for pattern in PATTERNS:
        found = sorted(root.glob(pattern.format(split=split)))
        if found:
            return found
    return []


def find(root: Path) -> Path | None:
    found = split_files(root, "test")
    return found[0] if found else None


def _table(path: Path) -> list[dict]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"{path}: reading parquet needs pyarrow (pip install 'radbench[data]')") from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses for bad files
        raise UsageError(f"{path}: not a readable parquet file ({' '.join(str(exc).split())[:200]})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise UsageError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(table.column_names)})")
    return table.select(list(COLUMNS)).to_pylist()


def _suffix(data: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        kind = Image.open(io.BytesIO(data)).format or ""
    except (UnidentifiedImageError, OSError):
        return ""
    return {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "TIFF": ".tif"}.get(kind, "")


def read(found: Path, src: Source) -> list[Sample]:
    paths = files(found, src.split)
    if not paths:
        raise UsageError(f"{found.parent}: no {src.split} parquet files (looked for "
                         f"{', '.join(p.format(split=src.split) for p in PATTERNS)})")
    out: list[Sample] = []
    number = 0
    for path in paths:
        digest, _ = hub.sha256_of([path])
        images = hub.radbench_cache() / "parquet-images" / digest[:32]
        file_src = replace(src, path=path, image_root=str(images))
        for row in _table(path):
            number += 1
            answer = clean_answer(text(row["answer"]).strip())
            image = row["image"]
            data = image.get("bytes") if isinstance(image, dict) else None
            if not isinstance(data, (bytes, bytearray)) or not data:
                out.append(file_src.broken(number, "image holds no bytes", answer))
                continue
            suffix = _suffix(bytes(data))
            if not suffix:
                out.append(file_src.broken(number, "image bytes are not a PNG, JPEG, BMP or TIFF image", answer))
                continue
            name = hashlib.sha256(data).hexdigest()[:24] + suffix
            target = images / name
            if not target.is_file():
                images.mkdir(parents=True, exist_ok=True)
                tmp = target.with_suffix(".part")
                tmp.write_bytes(data)
                tmp.replace(target)
            closed = answer.lower() in YES_NO
            out.append(file_src.sample(number, question=text(row["question"]), references=(answer,),
                                       images=(file_src.image(name, "2d"),), study_id=name,
                                       answer_type="closed" if closed else "open", options=YES_NO if closed else (),
                                       metadata={"image_name": text(image.get("path"))}))
    return out


def _root_of(found: Path) -> Path:
    """The folder the release's patterns start from (``found`` matched one of them under it)."""
    for pattern in PATTERNS:
        base = found.parents[pattern.count("/")]
        if found in base.glob(pattern.format(split="test")):
            return base
    return found.parent


def files(found: Path, split: str) -> list[Path]:
    return split_files(_root_of(found), split)


FORMAT = Format("hub-parquet", "data/test-*.parquet (the Hugging Face Hub release)", find, read, files)
