"""The run directory: an append-only prediction log and atomic writes (the lock: radbench/lock.py).

``predictions.jsonl`` is the source of truth of a run. Each record is keyed by content (sample id,
prompt hash, model fingerprint, generation settings), never by process rank or position, so a run
resumes after a crash, on another machine or with another world size, and generates nothing twice.
Every other file in the directory (``scores.jsonl``, ``results.json``) is derived from it.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from radbench import safe_io
from radbench.errors import UsageError
from radbench.types import Prediction, stable_hash

PREDICTIONS = "predictions.jsonl"
SCORES = "scores.jsonl"
RESULTS = "results.json"
LOCK = ".radbench.lock"
# Under torchrun each rank appends to its own log in OUTPUT/parts/ (radbench.distributed writes them);
# the store reads them back on resume, so the layout lives here, below both.
PARTS = "parts"


def part_files(output: Path) -> list[Path]:
    """Every rank's prediction log left in ``output`` by this or an earlier attempt."""
    return sorted((output / PARTS).glob("predictions.*.jsonl")) if (output / PARTS).is_dir() else []


def prediction_key(sample_id: str, prompt_hash: str, model_fingerprint: str, gen_kwargs: dict[str, Any]) -> str:
    return stable_hash([sample_id, prompt_hash, model_fingerprint, gen_kwargs])


# A full disk, an exceeded quota, an oversized file, a location turned read-only or forbidden.
UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM}


@contextmanager
def write_errors(path: Path) -> Iterator[None]:
    """Turn a failed write to ``path`` (disk full, quota, read-only) into one line naming it.

    Everything written before stays: predictions already appended are whole lines (a torn last line
    is dropped on resume), and a file replaced atomically keeps its previous version.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in UNWRITABLE:
            raise
        raise UsageError(f"{path}: cannot write ({os.strerror(exc.errno)}); everything written before is kept: "
                         "free space (or fix permissions) and re-run the same command to resume") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and rename, so readers never see half a file."""
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; published files follow the umask
            # A path with non-UTF-8 bytes reaches here as lone surrogates; they are written escaped
            # (\udcff), so the file stays valid UTF-8 and the write cannot fail halfway.
            with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def remove_stale_temporaries(directory: Path) -> None:
    """Delete temporary files that a killed :func:`atomic_write_text` left (call under the run lock)."""
    for name in (PREDICTIONS, SCORES, RESULTS):
        for tmp in directory.glob(f".{name}.*"):
            tmp.unlink(missing_ok=True)


def remove_leftover_temporaries(path: Path, min_age_s: float = 60.0) -> None:
    """Delete the temporaries that a killed :func:`atomic_write_text` of ``path`` left (``.NAME.*``).

    For files written without a lock (a leaderboard): only temporaries older than ``min_age_s`` are
    removed, since a write in progress holds its temporary for milliseconds, never a minute.
    """
    now = time.time()
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*"):
        try:
            if now - tmp.lstat().st_mtime >= min_age_s and tmp.is_file():
                tmp.unlink()
        except OSError:
            pass  # gone already, or not ours to remove


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in records))


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Records of a JSONL file and the number of torn trailing lines dropped.

    Only the last line may be torn (a crash mid-append); it is dropped, never half-parsed. A bad line
    anywhere else means the file was edited or corrupted, which is an error naming the line.
    """
    if not path.exists():
        return [], 0
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records: list[dict[str, Any]] = []
    torn = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        is_last = number == len(lines) or (number == len(lines) - 1 and not lines[-1])
        complete = number < len(lines)  # a line followed by "\n" was fully written
        try:
            record = safe_io.loads_json(line.decode("utf-8"), allow_nan=True)  # nesting bounded
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError) as exc:
            if is_last and not complete:
                torn += 1
                continue
            raise UsageError(f"{path}: line {number} is not a JSON object ({exc})") from exc
        if not complete:
            torn += 1  # parsed, but its newline never landed: treat as torn and regenerate
            continue
        records.append(record)
    return records, torn


def _drop_torn_tail(path: Path) -> None:
    """Cut a log after its last newline; idempotent, so a crash here is harmless."""
    data = path.read_bytes()
    os.truncate(path, data.rfind(b"\n") + 1)


class PredictionStore:
    """Append-only prediction logs with per-batch fsync and resume by content key.

    A single process appends to ``predictions.jsonl``. Under torchrun each rank appends to its own
    part file (``write_path``); :meth:`load` reads the main log and every part file, whatever world
    size wrote them, and :meth:`finalize` folds them into one canonical ``predictions.jsonl``.
    """

    def __init__(self, directory: Path, write_path: Path | None = None) -> None:
        self.directory = directory
        self.path = directory / PREDICTIONS
        self.write_path = write_path or self.path
        self.records: dict[str, dict[str, Any]] = {}
        self._fh: Any = None
        self._syncer: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def load(self) -> None:
        for path in [self.path, *part_files(self.directory)]:
            records, torn = read_jsonl(path)
            if torn and path == self.write_path:
                _drop_torn_tail(path)  # so the next append starts on a fresh line
            for record in records:
                if "key" not in record or "id" not in record:
                    raise UsageError(f"{path}: a record lacks 'key' or 'id'; not a radbench predictions file")
                # A failed sample is retried on resume; a successful record is never replaced by a failure.
                if record.get("error") is None or record["key"] not in self.records:
                    self.records[record["key"]] = record

    def done(self, key: str) -> bool:
        record = self.records.get(key)
        return record is not None and record.get("error") is None

    @contextmanager
    def writer(self) -> Iterator[None]:
        """Keep the log open while generating, fsyncing each batch in the background.

        Each batch is written and flushed at once (it survives a killed process), and its fsync
        overlaps the next batch's generation; the next append waits for it, so at most one batch is
        ever not yet on disk, and everything is when the block exits.
        """
        with write_errors(self.write_path):
            self.write_path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.write_path, "a", encoding="utf-8")
        with ThreadPoolExecutor(max_workers=1) as syncer:
            self._fh, self._syncer = fh, syncer
            try:
                yield
            finally:
                self._fh = self._syncer = None
                # Closing flushes what a failed write left buffered: a full disk fails here again.
                with write_errors(self.write_path):
                    try:
                        self._wait_for_sync()
                    finally:
                        fh.close()

    def _wait_for_sync(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def append(self, predictions: list[Prediction]) -> None:
        if not predictions:
            return
        payload = "".join(json.dumps(p.to_json(), sort_keys=True, ensure_ascii=False) + "\n" for p in predictions)
        with write_errors(self.write_path):
            if self._fh is None:
                self.write_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.write_path, "a", encoding="utf-8") as fh:
                    fh.write(payload)
                    fh.flush()
                    os.fsync(fh.fileno())
            else:
                self._wait_for_sync()
                self._fh.write(payload)
                self._fh.flush()
                self._pending = self._syncer.submit(os.fsync, self._fh.fileno())
        for p in predictions:
            self.records[p.key] = p.to_json()

    def finalize(self, order: list[str]) -> None:
        """Rewrite ``predictions.jsonl`` with one record per key, in dataset order, then drop part files.

        ``order`` lists this run's keys; records of other runs kept in the same folder (another
        model fingerprint, other settings) follow, sorted by key, so nothing is ever lost. The
        rewrite is atomic, and identical inputs give a byte-identical file, however the run was
        interrupted, resumed or sharded.
        """
        ours = set(order)
        ordered = [self.records[k] for k in order if k in self.records]
        ordered += [self.records[k] for k in sorted(self.records) if k not in ours]
        text = "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in ordered)
        if not self.path.exists() or self.path.read_text(encoding="utf-8") != text:
            atomic_write_text(self.path, text)
        for part in part_files(self.directory):
            part.unlink(missing_ok=True)
