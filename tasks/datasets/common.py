"""What every reader shares: rows from CSV/JSON/JSONL, image references, bad-row handling.

A whole file that cannot be used (missing, no such columns, not JSON at all) is a one-line
:class:`UsageError`: nothing can be evaluated from it. A single bad row (missing fields, bytes that
are not UTF-8, a line that is not JSON, a value a reader cannot interpret) becomes a *failed sample*
that carries its error: the runner records and counts it without sending it to a model, and
``radbench validate`` lists it. With ``--strict`` the first bad row stops the run instead, naming the
file and the row. A row is never skipped silently.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from radbench import safe_io
from radbench.errors import UsageError
from radbench.tasks.base import DataOptions
from radbench.safe_io import parse_json
from radbench.types import ImageKind, ImageRef, Sample


@dataclass(frozen=True)
class Row:
    """One record of a data file: its 1-based number, its fields, and what is wrong with it, if anything."""

    number: int
    values: dict[str, Any]
    problem: str | None = None


def _undecodable(value: Any) -> bool:
    """Whether a field (or anything nested in it) holds bytes that were not UTF-8, or a lone surrogate
    (a JSON escape such as ``"\\ud800"``), which is not text either and cannot be written as UTF-8."""
    if isinstance(value, str):
        return any("\ud800" <= ch <= "\udfff" for ch in value)
    if isinstance(value, dict):
        return any(_undecodable(k) or _undecodable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_undecodable(v) for v in value)
    return False


def utf16_problem(data: bytes) -> str | None:
    """Why ``data`` is UTF-16/32 rather than UTF-8 (a byte-order mark, or a NUL in every other byte), if it is.

    Excel and PowerShell save "Unicode" text as UTF-16; decoded as UTF-8 every other character is a
    NUL, and an error message quoting such a header would print raw NUL bytes.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8"
    even, odd = data[:4096:2], data[1:4096:2]
    if len(odd) >= 2:
        nuls = sorted((even.count(0) / len(even), odd.count(0) / len(odd)))
        if nuls[0] <= 0.1 and nuls[1] >= 0.9:
            return "file is UTF-16 (every other byte is NUL); save it as UTF-8"
    return None


def read_data_bytes(path: Path) -> bytes:
    """A data file's bytes, read whole only if it is a regular file within ``safe_io.MAX_DATA_BYTES``."""
    try:
        return safe_io.read_data(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, expected a data file") from None
    except (OSError, safe_io.UnsafeInput) as exc:
        raise UsageError(f"{path}: {getattr(exc, 'strerror', None) or exc}") from None


def _decode(path: Path) -> str:
    data = read_data_bytes(path)
    problem = utf16_problem(data)
    if problem:
        raise UsageError(f"{path}: {problem}")
    # surrogateescape keeps undecodable bytes visible, so the bad rows (not the file) fail
    return data.decode("utf-8-sig", errors="surrogateescape")


def read_rows(path: Path, required: Sequence[str] = ()) -> Iterator[Row]:
    """Records of a ``.csv``, ``.json`` (a list of objects) or ``.jsonl`` file, checked for ``required``.

    A CSV whose header lacks a required column, or a JSON file that does not parse, raises
    :class:`UsageError`; per-row problems are reported in :attr:`Row.problem`.
    """
    suffix = path.suffix.lower()
    text = _decode(path)
    if suffix == ".csv":
        yield from _csv_rows(path, text, required)
    elif suffix == ".jsonl":
        for number, line in enumerate((ln for ln in text.splitlines() if ln.strip()), start=1):
            try:
                value = safe_io.loads_json(line, allow_nan=True)
            except json.JSONDecodeError as exc:
                yield Row(number, {}, f"malformed JSON ({exc.msg} at column {exc.colno})")
                continue
            except safe_io.UnsafeInput as exc:
                yield Row(number, {}, str(exc))
                continue
            yield _record_row(number, value, required)
    elif suffix == ".json":
        data = parse_json(text, path)
        if not isinstance(data, list):
            raise UsageError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
        for number, value in enumerate(data, start=1):
            yield _record_row(number, value, required)
    else:
        raise UsageError(f"{path}: unsupported data file type {suffix!r} (use .csv, .json or .jsonl)")


def _csv_rows(path: Path, text: str, required: Sequence[str]) -> Iterator[Row]:
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise UsageError(f"{path}: missing column(s) {', '.join(missing)} (has: {', '.join(header) or 'no header'})")
        for number, raw in enumerate(reader, start=1):
            problem = None
            absent = [c for c in header if raw.get(c) is None]
            if absent:
                problem = f"missing field(s) {', '.join(absent)}"
            elif raw.get(None):  # type: ignore[call-overload]
                problem = f"{len(raw[None])} more field(s) than the header has"  # type: ignore[index]
            elif any(_undecodable(v) for v in raw.values()):
                problem = "not UTF-8 text"
            yield Row(number, {k: v for k, v in raw.items() if k is not None}, problem)
    except csv.Error as exc:
        raise UsageError(f"{path}: malformed CSV ({exc})") from None


def _record_row(number: int, value: Any, required: Sequence[str]) -> Row:
    if not isinstance(value, dict):
        return Row(number, {}, f"expected a JSON object, got {type(value).__name__}")
    missing = [k for k in required if k not in value]
    if missing:
        return Row(number, value, f"missing key(s) {', '.join(missing)}")
    if _undecodable(value):
        return Row(number, value, "not UTF-8 text")
    return Row(number, value)


def locate(root: Path, names: Sequence[str]) -> Path | None:
    """The first of ``names`` (known spellings of one file, in preference order) found in ``root``
    or one of its immediate sub-folders (``data_csv/`` after unzipping RadFM's archive)."""
    if not root.is_dir():
        return None
    with os.scandir(root) as entries:  # scandir: no stat per entry, so huge image folders stay cheap
        folders = [root] + sorted(Path(e.path) for e in entries if e.is_dir())
    for name in names:
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
    return None


@dataclass(frozen=True)
class Source:
    """One data file being read into one subset: ids, image references, and bad-row handling.

    ``image_root`` is the folder relative image paths resolve against (the data root by default);
    ``--image-root OLD=NEW`` rewrites take precedence, longest prefix first.
    """

    path: Path
    dataset: str
    subset: str
    split: str
    task: str
    options: DataOptions
    image_root: str | None = None

    def sample_id(self, row: int, suffix: str = "") -> str:
        return f"{self.subset}-{self.split}-{row:05d}{suffix}"

    def where(self, row: int) -> str:
        return f"{self.path}: row {row}"

    def image(self, path: str, kind: ImageKind, index: int | None = None) -> ImageRef:
        """A lazy reference; the path is rewritten by the first matching ``--image-root`` prefix."""
        path = path.strip()
        root = self.image_root if self.image_root is not None else self.options.data_root
        if not path.startswith("pkg:"):
            for old, new in sorted(self.options.image_roots, key=lambda pair: -len(pair[0])):
                prefix = old.rstrip("/")
                if path == prefix or path.startswith(prefix + "/"):
                    path, root = path[len(prefix):].lstrip("/"), new
                    break
        return ImageRef(path, kind, root, index=index, window=self.options.window,
                        allow_outside_root=self.options.allow_outside_root)

    def sample(self, row: int, suffix: str = "", **fields: Any) -> Sample:
        metadata = {"source": f"{self.path.name} row {row}", **fields.pop("metadata", {})}
        return Sample(id=self.sample_id(row, suffix), dataset=self.dataset, task=self.task, split=self.split,
                      subset=self.subset, metadata=metadata, **fields)

    def broken(self, row: int, problem: str, reference: str = "", suffix: str = "") -> Sample:
        """A failed sample for a row that cannot be used, or (``--strict``) a one-line UsageError."""
        message = f"{self.where(row)}: {problem}"
        if self.options.strict:
            raise UsageError(message)
        # no raw bytes (surrogate escapes) and no lone surrogates (JSON escapes) downstream
        lone = "".join("\ufffd" if "\ud800" <= ch <= "\udfff" and not "\udc80" <= ch <= "\udcff" else ch
                       for ch in reference)
        readable = lone.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        return self.sample(row, suffix, references=(readable,), metadata={"error": message})


def text(value: Any) -> str:
    """A field as text: CSV fields already are; JSON numbers and the like are converted."""
    return value if isinstance(value, str) else ("" if value is None else str(value))
