"""Reading untrusted files without hanging, exhausting memory or crashing the interpreter.

Every limit is a module constant named here and in docs/security.md; the two that real data might
outgrow can be raised through the environment:

* :data:`MAX_IMAGE_BYTES` (``RADBENCH_MAX_IMAGE_BYTES``, default 1 GiB): the largest single image
  or volume file read, hashed or prefetched. A larger file (a 2 GB sparse file, a runaway export) fails its sample before a byte of it is read.
* :data:`MAX_IMAGE_PIXELS` (``RADBENCH_MAX_IMAGE_PIXELS``, default 2**26, 67 megapixels, 8192x8192): the most pixels a
  2D image may decode to; PNG/JPEG "decompression bombs" fail their sample from the header alone.
* :data:`MAX_DATA_BYTES` (``RADBENCH_MAX_DATA_BYTES``, default 1 GiB): the largest data file (an
  annotation JSON, a config, a report) read whole into memory; real releases are far smaller
  (R2Gen's MIMIC-CXR ``annotation.json`` is about 100 MB).
* :data:`MAX_NESTING` (100): the deepest nesting of a JSON/JSONL/YAML value or a Python list
  literal; deeper input is a data error rather than a ``RecursionError``.
* :data:`MAX_LITERAL_CHARS` (1 MiB): the longest Python literal (a RadFM CSV cell) parsed. A shorter
  one that still exhausts CPython's parser (a chain of operators, ``[------...1]``, raises
  ``MemoryError`` or ``RecursionError`` there) is refused the same way: a data error.

Only regular files are ever opened for reading: a FIFO would block forever and ``/dev/zero``
(directly or through a symlink) never ends. YAML anchors and aliases are refused outright, so a
few hundred bytes cannot expand to gigabytes ("billion laughs").
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

from radbench.errors import UsageError

MAX_IMAGE_BYTES = int(os.environ.get("RADBENCH_MAX_IMAGE_BYTES", str(1 << 30)))
MAX_IMAGE_PIXELS = int(os.environ.get("RADBENCH_MAX_IMAGE_PIXELS", str(1 << 26)))
MAX_DATA_BYTES = int(os.environ.get("RADBENCH_MAX_DATA_BYTES", str(1 << 30)))
MAX_NESTING = 100
MAX_LITERAL_CHARS = 1 << 20


class UnsafeInput(ValueError):
    """A file or value that is refused before it is read whole (the message says why)."""


def check_path(path: str | os.PathLike[str]) -> str:
    """``path`` as a string, refusing a NUL byte (the OS would raise a bare ``ValueError``)."""
    text = os.fspath(path)
    if "\0" in text:
        raise UnsafeInput(f"path {text!r} contains a NUL byte")
    return text


def regular_file(path: str | os.PathLike[str], limit: int = MAX_IMAGE_BYTES,
                 setting: str = "RADBENCH_MAX_IMAGE_BYTES") -> os.stat_result:
    """The ``stat`` of ``path`` (symlinks followed) if it is a regular file of at most ``limit`` bytes.

    Raises :class:`FileNotFoundError` when nothing is there and :class:`UnsafeInput` for a FIFO,
    device, socket or an oversized file (whose message names ``setting``, the variable that raises
    the limit).
    """
    text = check_path(path)
    info = os.stat(text)
    if stat.S_ISDIR(info.st_mode):
        raise IsADirectoryError(text)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafeInput(f"{text} is not a regular file (a FIFO, device or socket is never read)")
    if info.st_size > limit:
        raise UnsafeInput(f"{text} is {info.st_size} bytes, over the limit of {limit} "
                          f"(raise {setting} if the file is real)")
    return info


def open_regular(path: str | os.PathLike[str], limit: int = MAX_IMAGE_BYTES,
                 setting: str = "RADBENCH_MAX_IMAGE_BYTES") -> BinaryIO:
    """Open ``path`` for binary reading only if it is a regular file within ``limit``.

    The open itself is non-blocking and the check is repeated on the opened descriptor, so a file
    swapped for a FIFO between the check and the open cannot block.
    """
    text = check_path(path)
    regular_file(text, limit, setting)
    fd = os.open(text, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > limit:
            raise UnsafeInput(f"{text} changed into something other than a regular file within the limit")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _depth(value: Any, limit: int) -> None:
    """Raise :class:`UnsafeInput` when containers in ``value`` nest deeper than ``limit`` (iterative)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values()) + list(item.keys())
        elif isinstance(item, (list, tuple, set)):
            children = list(item)
        else:
            continue
        if depth > limit:
            raise UnsafeInput(f"nested deeper than {limit} levels")
        stack.extend((c, depth + 1) for c in children)


def _brackets_depth(text: str) -> int:
    """The deepest ``[``/``{``/``(`` nesting in ``text`` outside string literals (a cheap pre-check)."""
    depth = deepest = 0
    quote: str | None = None
    escaped = False
    for ch in text:
        if quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
        elif ch in "\"'":
            quote = ch
        elif ch in "[{(":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]})":
            depth -= 1
    return deepest


def read_data(path: str | os.PathLike[str], limit: int = MAX_DATA_BYTES) -> bytes:
    """The bytes of a data file read whole: only a regular file of at most ``limit`` bytes.

    Raises :class:`FileNotFoundError`, :class:`IsADirectoryError` or :class:`UnsafeInput` (a FIFO,
    a device, an oversized file), so a reader turns each into one line naming the file.
    """
    with open_regular(path, limit, "RADBENCH_MAX_DATA_BYTES") as fh:
        return fh.read(limit + 1)


def loads_json(text: str | bytes, limit: int = MAX_NESTING, allow_nan: bool = False) -> Any:
    """``json.loads`` that refuses nesting deeper than ``limit`` and, unless ``allow_nan``, non-finite numbers.

    The parse runs first (C speed, and CPython's decoder stops a runaway nesting with a
    ``RecursionError`` that is caught here); the depth of the parsed value is then checked without
    recursion, so a value nested between ``limit`` and the interpreter's own limit never reaches code
    that walks it recursively. Dataset files keep ``allow_nan`` (a ``NaN`` field is a missing value
    of one row); files radbench ranks or compares refuse it.

    Raises ``ValueError`` (``json.JSONDecodeError`` or :class:`UnsafeInput`), never ``RecursionError``.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")

    def constant(name: str) -> float:
        if allow_nan:
            return float(name)
        raise UnsafeInput(f"JSON contains the non-finite number {name}")

    try:
        value = json.loads(text, parse_constant=constant)
    except RecursionError:
        raise UnsafeInput(f"JSON nested deeper than {limit} levels") from None
    try:
        _depth(value, limit)
    except UnsafeInput:
        raise UnsafeInput(f"JSON nested deeper than {limit} levels") from None
    return value


def literal_eval(text: str, limit: int = MAX_NESTING) -> Any:
    """``ast.literal_eval`` with a nesting and a length limit (flat lists are fine; deep ones are refused).

    Raises ``ValueError`` (:class:`UnsafeInput` for a refused literal) or ``SyntaxError``.
    """
    import ast

    if len(text) > MAX_LITERAL_CHARS:
        raise UnsafeInput(f"literal of {len(text)} characters is over the limit of {MAX_LITERAL_CHARS}")
    if _brackets_depth(text) > limit:
        raise UnsafeInput(f"literal nested deeper than {limit} levels")
    try:
        return ast.literal_eval(text)
    except (RecursionError, MemoryError):
        raise UnsafeInput(f"literal too deep or too large to parse ({len(text)} characters)") from None


def load_yaml(text: str | bytes, limit: int = MAX_NESTING) -> Any:
    """``yaml.safe_load`` without anchors/aliases and with a nesting limit.

    Aliases are what let a 414-byte document expand to hundreds of megabytes; a dataset config
    never needs them. Raises ``yaml.YAMLError`` or :class:`UnsafeInput`.
    """
    import yaml

    class _NoAliases(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise UnsafeInput(f"YAML alias *{event.anchor} at line {event.start_mark.line + 1}: "
                                  "anchors and aliases are not allowed")
            event = self.peek_event()
            if getattr(event, "anchor", None):
                raise UnsafeInput(f"YAML anchor &{event.anchor} at line {event.start_mark.line + 1}: "
                                  "anchors and aliases are not allowed")
            self._rb_depth = getattr(self, "_rb_depth", 0) + 1
            try:
                if self._rb_depth > limit:
                    raise UnsafeInput(f"YAML nested deeper than {limit} levels")
                return super().compose_node(parent, index)
            finally:
                self._rb_depth -= 1

    try:
        return yaml.load(text, Loader=_NoAliases)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        raise UnsafeInput(f"YAML nested deeper than {limit} levels") from None


def image_pixels_ok(width: int, height: int, where: str) -> None:
    """Refuse a 2D image whose header promises more than :data:`MAX_IMAGE_PIXELS` pixels."""
    if width * height > MAX_IMAGE_PIXELS:
        raise UnsafeInput(f"{where}: {width}x{height} pixels is over the limit of {MAX_IMAGE_PIXELS} "
                          "(a decompression bomb, or raise RADBENCH_MAX_IMAGE_PIXELS)")


def is_regular(path: Path) -> bool:
    """True for an existing regular file (symlinks followed); False for anything else, NUL bytes included."""
    try:
        regular_file(path, limit=1 << 62)
    except (OSError, ValueError):
        return False
    return True


def advise_willneed(path: str | os.PathLike[str]) -> None:
    """Ask the OS to start reading a regular file into its page cache, without reading it here.

    Prefetching by reading would hold each upcoming file whole in memory for nothing (and never end
    on ``/dev/zero``); the hint costs no memory and returns at once. Anything but a regular file
    within :data:`MAX_IMAGE_BYTES` is skipped: its sample's own read reports it.
    """
    try:
        with open_regular(path) as fh:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_WILLNEED)
    except (OSError, ValueError):
        pass


def npy_header_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a ``.npy`` file, from its first bytes, or None when it starts like one.

    ``np.load(allow_pickle=False)`` reports any file without the ``\\x93NUMPY`` magic (a zero-filled
    file, a truncated download) as "pickled data", which sends users looking for a pickle; the
    image reader calls this first so the error says what the bytes are.
    """
    with open_regular(path) as fh:
        head = fh.read(6)
    if head == b"\x93NUMPY":
        return None
    what = "empty" if not head else "all zero bytes at the start" if not any(head) else f"it starts with {head!r}"
    return f"{os.fspath(path)} is not a .npy file (no NumPy header: {what})"


def parse_json(text: str, path: Path) -> Any:
    """JSON from ``text``; malformed JSON is a one-line error naming the file, line and column."""
    try:
        # NaN stays a value (a missing field of one row); nesting past safe_io.MAX_NESTING is refused
        return loads_json(text, allow_nan=True)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}: malformed JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    except UnsafeInput as exc:
        raise UsageError(f"{path}: {exc}") from None


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object file shipped beside weights (a model or tokenizer config, a shard index).

    Read as a regular file within :data:`MAX_DATA_BYTES` and :data:`MAX_NESTING`; a missing, unreadable,
    malformed, too deeply nested or non-object file is one :class:`UsageError` naming ``what`` and it.
    """
    try:
        value = loads_json(read_data(path).decode("utf-8"), allow_nan=True)
    except (OSError, ValueError) as exc:  # UnicodeDecodeError, JSONDecodeError and UnsafeInput are ValueErrors
        raise UsageError(f"{what}: cannot read {path}: {exc}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{what}: {path} holds a JSON {type(value).__name__}, not an object")
    return value
