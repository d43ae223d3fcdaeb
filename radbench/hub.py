"""Hugging Face Hub repo ids as inputs: ``ORG/NAME`` or ``ORG/NAME@REVISION``, for models and datasets.

:func:`resolve` turns a user's argument into a local path. An existing local path always wins, so a
folder that happens to be called ``org/name`` is never shadowed by a repo. A repo id is resolved with
``huggingface_hub`` through its ordinary cache (``HF_HUB_CACHE``): only the files asked for
(``allow_patterns``), downloaded with huggingface_hub's progress bars when online, never when
``HF_HUB_OFFLINE=1`` (then a repo missing from the cache is one line naming the repo and the cache).
What was resolved (repo id, requested revision, resolved commit, archives and their SHA-256) comes
back as :class:`Resolved` so results can record it.

Archives in a repo (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``, and zips split in parts,
``NAME.z01 ... NAME.zNN`` + ``NAME.zip``, as RadFM's checkpoint is published) are extracted once into
radbench's cache, next to links to the repo's other files, so the returned folder looks like the
repo with its archives unpacked. Each extraction records the archive's SHA-256 and is reused while
that record exists; a corrupt or truncated archive is one line naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Iterable, Sequence

from radbench import safe_io
from radbench.errors import UsageError

REPO_TYPES = ("model", "dataset")
# ORG/NAME as the Hub spells them (letters, digits, '-', '_', '.'), then an optional @REVISION.
_REPO_ID = re.compile(r"^(?P<repo>[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95})(?:@(?P<rev>[\w./-]+))?$")
_PART = re.compile(r"^(?P<stem>.+)\.z(?P<n>\d{2,})$", re.IGNORECASE)
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
RECORD = ".radbench-archives.json"


@dataclass(frozen=True)
class Archive:
    """One archive found in a repo: its file name(s) in order, and where it was unpacked."""

    name: str
    parts: tuple[str, ...]
    sha256: str
    size: int

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "parts": list(self.parts), "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Resolved:
    """A local path for what the user named, and where it came from.

    ``repo_id`` is ``None`` for a local path. ``commit`` is the resolved commit SHA of the snapshot
    (whatever ``revision`` named: a branch, a tag or a SHA).
    """

    path: Path
    repo_id: str | None = None
    repo_type: str = "model"
    revision: str | None = None
    commit: str | None = None
    snapshot: Path | None = None
    archives: tuple[Archive, ...] = field(default=())

    def provenance(self) -> dict[str, Any]:
        """What results should record: enough to fetch the very same files again."""
        if self.repo_id is None:
            return {"path": str(self.path)}
        return {"repo_id": self.repo_id, "repo_type": self.repo_type, "revision": self.revision or "main",
                "commit": self.commit, "archives": [a.to_json() for a in self.archives]}


def parse_repo_id(text: str) -> tuple[str, str | None] | None:
    """``(repo_id, revision)`` for ``ORG/NAME[@REV]``; ``None`` if ``text`` is not spelled like one."""
    match = _REPO_ID.match(text.strip())
    if match is None or text.startswith(("./", "../", "/", "~")):
        return None
    return match.group("repo"), match.group("rev")


def hub_cache() -> Path:
    """huggingface_hub's cache folder, read from the environment now (tests and users may change it)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(home).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def offline() -> bool:
    """Whether downloads are forbidden (``HF_HUB_OFFLINE`` set to a true value)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def radbench_cache() -> Path:
    """radbench's own cache (``RADBENCH_CACHE``), where unpacked archives live."""
    return Path(os.environ.get("RADBENCH_CACHE") or Path.home() / ".cache" / "radbench")


def resolve(spec: str, *, repo_type: str = "model", allow_patterns: Sequence[str] | None = None,
            what: str = "path", extract: bool = True) -> Resolved:
    """A local path for ``spec``: the path itself if it exists, else the Hub repo it names.

    ``allow_patterns`` limits a download to the files an adapter or reader needs (``None``: all).
    ``what`` names the argument in error messages (``--data-root``, ``checkpoint=``).
    """
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type must be one of {REPO_TYPES}, got {repo_type!r}")
    local = Path(spec).expanduser()
    if local.exists():
        return Resolved(local)
    parsed = parse_repo_id(spec)
    if parsed is None:
        raise UsageError(f"{what} {spec}: no such file or folder, and not a Hugging Face repo id (ORG/NAME[@REVISION])")
    repo_id, revision = parsed
    snapshot = _snapshot(repo_id, repo_type, revision, allow_patterns, what)
    commit = snapshot.name
    label = f"{repo_type} repo {repo_id}" + (f"@{revision}" if revision else "")
    present = [p for p in _files(snapshot) if _wanted(p, allow_patterns)]
    if not present:
        wanted = ", ".join(allow_patterns or ()) or "any file"
        raise UsageError(f"{what} {spec}: the cached {label} has no files matching {wanted} (cache: {hub_cache()})")
    groups = _archive_groups(present) if extract else []
    if not groups:
        return Resolved(snapshot, repo_id, repo_type, revision, commit, snapshot)
    view = radbench_cache() / "hub" / f"{repo_type}s--{repo_id.replace('/', '--')}" / commit
    archives = _unpack_into_view(snapshot, view, present, groups)
    return Resolved(view, repo_id, repo_type, revision, commit, snapshot, archives)


def _wanted(relative: str, patterns: Sequence[str] | None) -> bool:
    return patterns is None or any(fnmatch(relative, p) for p in patterns)


def _files(root: Path) -> list[str]:
    """Every file under a snapshot, as POSIX paths relative to it (links into the blob store included)."""
    out = []
    for folder, _, names in os.walk(root, followlinks=True):
        for name in names:
            out.append(Path(folder, name).relative_to(root).as_posix())
    return sorted(out)


def _snapshot(repo_id: str, repo_type: str, revision: str | None, allow_patterns: Sequence[str] | None,
              what: str) -> Path:
    """The snapshot folder of ``repo_id`` at ``revision`` in huggingface_hub's cache, downloading what is missing."""
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hf_errors

    cache = hub_cache()
    label = f"{repo_type} repo {repo_id}" + (f"@{revision}" if revision else "")
    no_download = offline()
    try:
        path = snapshot_download(repo_id, repo_type=repo_type, revision=revision, cache_dir=str(cache),
                                 allow_patterns=list(allow_patterns) if allow_patterns else None,
                                 local_files_only=no_download)
    except hf_errors.LocalEntryNotFoundError as exc:
        if no_download:
            raise UsageError(f"{what}: Hugging Face {label} is not in the cache {cache} and HF_HUB_OFFLINE=1 "
                             "forbids downloading it (download it on a machine online, or unset HF_HUB_OFFLINE)") from None
        raise UsageError(f"{what}: cannot download Hugging Face {label} into {cache} ({_one_line(exc)})") from None
    except hf_errors.GatedRepoError:
        raise UsageError(f"{what}: Hugging Face {label} is gated: accept its terms on the Hub and log in "
                         "(`hf auth login`)") from None
    except hf_errors.RepositoryNotFoundError:
        raise UsageError(f"{what}: no Hugging Face {label} (or it is private: log in with `hf auth login`)") from None
    except hf_errors.RevisionNotFoundError:
        raise UsageError(f"{what}: Hugging Face {repo_type} repo {repo_id} has no revision {revision!r}") from None
    except (hf_errors.HfHubHTTPError, OSError) as exc:
        raise UsageError(f"{what}: cannot fetch Hugging Face {label} into {cache} ({_one_line(exc)})") from None
    except Exception as exc:  # httpx's connection errors are not OSErrors
        if type(exc).__module__.split(".")[0] not in ("httpx", "httpcore", "requests", "urllib3"):
            raise
        raise UsageError(f"{what}: cannot reach the Hugging Face Hub for {label} ({_one_line(exc)})") from None
    return Path(path)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _archive_groups(files: Iterable[str]) -> list[tuple[str, ...]]:
    """Archives among ``files``: a split zip as its parts in order (``.z01``, ``.z02``, ..., ``.zip``)."""
    files = list(files)
    parts: dict[str, list[tuple[int, str]]] = {}
    for name in files:
        match = _PART.match(name)
        if match:
            parts.setdefault(match.group("stem"), []).append((int(match.group("n")), name))
    groups = []
    for name in files:
        lower = name.lower()
        if not lower.endswith(ARCHIVE_SUFFIXES):
            continue
        stem = name[: -len(".zip")] if lower.endswith(".zip") else None
        if stem is not None and stem in parts:
            numbered = sorted(parts.pop(stem))
            expected = list(range(1, len(numbered) + 1))
            if [n for n, _ in numbered] != expected:
                raise UsageError(f"{name}: split zip parts are not numbered 1..{len(numbered)}: "
                                 f"{', '.join(p for _, p in numbered)}")
            groups.append(tuple(p for _, p in numbered) + (name,))
        else:
            groups.append((name,))
    for stem, numbered in parts.items():
        raise UsageError(f"{numbered[0][1]}: part of a split zip whose last part {stem}.zip is missing")
    return groups


def _unpack_into_view(snapshot: Path, view: Path, present: list[str],
                      groups: list[tuple[str, ...]]) -> tuple[Archive, ...]:
    """Make ``view`` the repo with its archives unpacked: links to the other files, archive contents."""
    view.mkdir(parents=True, exist_ok=True)
    in_archives = {p for group in groups for p in group}
    for relative in present:
        if relative in in_archives:
            continue
        link = view / relative
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.path.realpath(snapshot / relative), link)
    record_path = view / RECORD
    record = _read_record(record_path)
    done = []
    for group in groups:
        name = group[-1]
        if name in record:
            done.append(Archive(name, group, record[name]["sha256"], record[name]["size"]))
            continue
        archive = unpack([snapshot / p for p in group], view / Path(name).parent)
        done.append(Archive(name, group, archive.sha256, archive.size))
        record[name] = archive.to_json()
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
        os.replace(tmp, record_path)
    return tuple(done)


def _read_record(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = safe_io.loads_json(path.read_text(encoding="utf-8"), allow_nan=True)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def sha256_of(paths: Sequence[Path], chunk: int = 1 << 22) -> tuple[str, int]:
    """SHA-256 and size of the files' bytes one after the other (a split zip's whole stream)."""
    digest, size = hashlib.sha256(), 0
    for path in paths:
        with open(path, "rb") as fh:
            while block := fh.read(chunk):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size


def unpack(parts: Sequence[Path], dest: Path) -> Archive:
    """Extract an archive (one file, or a split zip's parts in order) into ``dest``.

    It goes through a temporary folder inside ``dest`` and is moved in place only once complete, so an
    interrupted extraction is redone, never half-used. A corrupt archive is one :class:`UsageError`.
    """
    name = parts[-1].name
    digest, size = sha256_of(parts)
    dest.mkdir(parents=True, exist_ok=True)
    staging = dest / f".unpacking-{name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        if len(parts) > 1:
            joined = staging.parent / f".joined-{name}"
            try:
                join_split_zip(parts, joined)
                _extract_zip(joined, staging, label=f"{name} (joined from {len(parts)} parts)")
            finally:
                joined.unlink(missing_ok=True)
        elif name.lower().endswith(".zip"):
            _extract_zip(parts[0], staging, label=name)
        else:
            _extract_tar(parts[0], staging)
        for child in staging.iterdir():
            target = dest / child.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
            os.replace(child, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Archive(name, tuple(p.name for p in parts), digest, size)


def _extract_zip(path: Path, dest: Path, label: str) -> None:
    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise UsageError(f"{path.parent / label}: corrupt archive (CRC mismatch in {bad})")
            zf.extractall(dest)  # zipfile drops absolute paths and '..' components
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError) as exc:
        raise UsageError(f"{path.parent / label}: corrupt or unreadable zip archive ({_one_line(exc)})") from None


def _extract_tar(path: Path, dest: Path) -> None:
    try:
        with tarfile.open(path) as tf:
            tf.extractall(dest, filter="data")  # refuses links and paths that leave dest
    except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
        raise UsageError(f"{path}: corrupt or unreadable tar archive ({_one_line(exc)})") from None


# --- split zips ----------------------------------------------------------------------------------
# A zip split in parts (``zip -s``: NAME.z01, ..., NAME.zip) stores every offset relative to the
# start of the part ("disk") it points into. Python's zipfile reads single-file archives only, so
# the parts are concatenated and the central directory's offsets made absolute (what ``zip -s 0``
# does), after which zipfile reads and CRC-checks it like any other zip.

_CDH = struct.Struct("<4s6H3L5H2L")  # central directory file header, 46 bytes
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory, 22 bytes
_EOCD64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory, 56 bytes
_LOC64 = struct.Struct("<4sLQL")  # zip64 end of central directory locator, 20 bytes


def join_split_zip(parts: Sequence[Path], out: Path) -> None:
    """Concatenate a split zip's parts into ``out`` with every offset rewritten as absolute."""
    starts, total = [], 0
    with open(out, "wb") as fh:
        for part in parts:
            starts.append(total)
            with open(part, "rb") as src:
                shutil.copyfileobj(src, fh, 1 << 22)
            total = fh.tell()
    last = parts[-1].stat().st_size
    try:
        with open(out, "r+b") as fh:
            _rewrite_offsets(fh, starts, total, last)
    except (struct.error, ValueError, IndexError) as exc:
        raise UsageError(f"{parts[-1]}: corrupt split zip ({_one_line(exc)})") from None


def _rewrite_offsets(fh: Any, starts: list[int], total: int, last_size: int) -> None:
    tail_len = min(last_size, 65536 + _EOCD.size)
    fh.seek(total - tail_len)
    tail = fh.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0:
        raise ValueError("no end-of-central-directory record in the last part")
    eocd_pos = total - tail_len + at
    (sig, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, comment) = _EOCD.unpack(tail[at:at + _EOCD.size])
    zip64 = None
    loc_pos = eocd_pos - _LOC64.size
    if loc_pos >= 0:
        fh.seek(loc_pos)
        loc = _LOC64.unpack(fh.read(_LOC64.size))
        if loc[0] == b"PK\x06\x07":
            eocd64_pos = starts[loc[1]] + loc[2]
            fh.seek(eocd64_pos)
            rec = list(_EOCD64.unpack(fh.read(_EOCD64.size)))
            if rec[0] != b"PK\x06\x06":
                raise ValueError("zip64 end-of-central-directory record not where its locator says")
            zip64 = (eocd64_pos, rec, loc_pos, loc)
            cd_disk, n_total, cd_size, cd_offset = rec[5], rec[7], rec[8], rec[9]
    cd_pos = starts[cd_disk] + cd_offset
    fh.seek(cd_pos)
    directory = bytearray(fh.read(cd_size))
    pos = 0
    for _ in range(n_total):
        fields = list(_CDH.unpack_from(directory, pos))
        if fields[0] != b"PK\x01\x02":
            raise ValueError(f"bad central directory entry at offset {cd_pos + pos}")
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        extra_at = pos + _CDH.size + name_len
        disk_no, offset = fields[13], fields[16]
        # zip64 extra field (id 1): sizes, offset, disk, each present only when its 32/16-bit field is maxed
        z64_offset_at = z64_disk_at = None
        e = extra_at
        while e + 4 <= extra_at + extra_len:
            tag, length = struct.unpack_from("<2H", directory, e)
            if tag == 1:
                cursor = e + 4
                cursor += 8 * ((fields[9] == 0xFFFFFFFF) + (fields[8] == 0xFFFFFFFF))
                if offset == 0xFFFFFFFF:
                    z64_offset_at, offset = cursor, struct.unpack_from("<Q", directory, cursor)[0]
                    cursor += 8
                if disk_no == 0xFFFF:
                    z64_disk_at, disk_no = cursor, struct.unpack_from("<L", directory, cursor)[0]
            e += 4 + length
        absolute = starts[disk_no] + offset
        if z64_offset_at is not None:
            struct.pack_into("<Q", directory, z64_offset_at, absolute)
        elif absolute >= 0xFFFFFFFF:
            raise ValueError("an entry's offset needs zip64 but the archive does not carry it")
        else:
            fields[16] = absolute
        if z64_disk_at is not None:
            struct.pack_into("<L", directory, z64_disk_at, 0)
        fields[13] = 0
        _CDH.pack_into(directory, pos, *fields)
        pos = extra_at + extra_len + comment_len
    fh.seek(cd_pos)
    fh.write(directory)
    if zip64 is not None:
        eocd64_pos, rec, loc_pos, loc = zip64
        rec[4] = rec[5] = 0  # this disk, disk with the central directory
        rec[6] = rec[7]  # entries on this disk = all entries
        rec[9] = cd_pos
        fh.seek(eocd64_pos)
        fh.write(_EOCD64.pack(*rec))
        fh.seek(loc_pos)
        fh.write(_LOC64.pack(loc[0], 0, eocd64_pos, 1))
    eocd = [sig, 0, 0, n_total if n_total < 0xFFFF else 0xFFFF, n_total if n_total < 0xFFFF else 0xFFFF,
            cd_size if cd_size < 0xFFFFFFFF else 0xFFFFFFFF, cd_pos if cd_pos < 0xFFFFFFFF else 0xFFFFFFFF, comment]
    fh.seek(eocd_pos)
    fh.write(_EOCD.pack(*eocd))

