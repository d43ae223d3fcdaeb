"""Public datasets read in the layout their publishers ship, whichever layout is in ``--data-root``.

A dataset name (``vqa-rad``, ``slake``, ``pmc-vqa``, ``mimic-cxr``, ``iu-xray``) stands for the data,
not for one file layout: its :class:`Format` s are tried in order on the data root (the publisher's
release first, then other public releases, then RadFM's repackaged CSVs), and the first whose files
are there reads it. ``radbench validate`` names the format found. ``--data-root hf:ORG/NAME[@REV]``
(or no ``--data-root`` at all, for a dataset with a public Hub repo) resolves a Hub dataset repo
through :mod:`radbench.hub`, archives inside it unpacked once into the cache.

Each reader lives in its own module (``vqa_rad_osf``, ``hub_parquet``, ``slake_json``,
``pmc_vqa_csv``, ``mimic_cxr_jpg``, ``r2gen``) and produces the same :class:`~radbench.types.Sample`
objects as RadFM's readers, with lazy image references and per-row failures.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator, Sequence

from radbench import hub
from radbench.errors import UsageError
from radbench.tasks.base import DataOptions, cap_images
from radbench.tasks.datasets import radfm
from radbench.tasks.datasets.common import Source, locate, parse_json, read_data_bytes, text, utf16_problem
from radbench.tasks.templates import PromptLibrary, plan_all
from radbench.types import Sample

SPLITS = ("test", "train")
HF_PREFIX = "hf:"


@dataclass(frozen=True)
class Format:
    """One file layout of a dataset.

    ``find(root)`` returns the file that identifies the layout (``None`` if it is not there);
    ``read(found, src)`` reads ``src.split`` into samples (``src.path`` is ``found``; a reader points
    it at the file it actually reads, so row errors name that file); ``files(found, split)`` lists
    the files a split reads, for ``radbench validate``.
    """

    name: str
    looks_for: str
    find: Callable[[Path], Path | None]
    read: Callable[[Path, Source], list[Sample]]
    files: Callable[[Path, str], list[Path]]


def radfm_format(cls: type[radfm.FileDataset]) -> Format:
    """RadFM's repackaged CSVs for a dataset, as one more format (read by :mod:`.radfm`)."""
    parts = [part for parts in cls.layout.values() for part in parts]
    spellings = parts[0].files["test"]

    def find(root: Path) -> Path | None:
        return locate(root, spellings)

    def not_called(found: Path, src: Source) -> list[Sample]:
        raise AssertionError("RadFM's format is read by its FileDataset")

    return Format("radfm-csv", f"RadFM's repackaged CSV ({', '.join(spellings)})", find, not_called,
                  lambda found, split: [found])


@dataclass(frozen=True)
class Located:
    """Where a dataset's files were found: the format, its identifying file, the root, the Hub origin."""

    format: Format
    found: Path
    root: Path
    origin: hub.Resolved

    def describe(self) -> dict[str, Any]:
        return {"format": self.format.name, "file": str(self.found), "root": str(self.root), **self.origin.provenance()}


class PublishedDataset:
    """A dataset with several known layouts, detected from ``--data-root``."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    task: ClassVar[str] = "vqa"
    subset: ClassVar[str] = ""
    family: ClassVar[str] = "vqa"
    formats: ClassVar[tuple[Format, ...]] = ()
    radfm_class: ClassVar[type[radfm.FileDataset] | None] = None
    hub_repo: ClassVar[str | None] = None
    hub_files: ClassVar[tuple[str, ...]] = ()
    is_demo: ClassVar[bool] = False
    tasks: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.tasks = (cls.task,)

    def __init__(self) -> None:
        self.max_images: int | None = None  # RadFM's files keep RadFM's cap of 8 (set when detected)
        self._located: dict[str | None, Located] = {}

    def all_formats(self) -> tuple[Format, ...]:
        return self.formats + ((radfm_format(self.radfm_class),) if self.radfm_class else ())

    def _root(self, data_root: str | None) -> hub.Resolved:
        if data_root is None:
            if self.hub_repo is None:
                raise UsageError(f"dataset {self.name!r} needs --data-root (a folder in one of its layouts; "
                                 "`radbench list datasets` and docs/data.md list them)")
            return hub.resolve(self.hub_repo, repo_type="dataset", allow_patterns=self.hub_files or None,
                               what=f"dataset {self.name!r} (default Hub repo)")
        if data_root.startswith(HF_PREFIX):
            return hub.resolve(data_root[len(HF_PREFIX):], repo_type="dataset", allow_patterns=self.hub_files or None,
                               what=f"--data-root {data_root}")
        root = Path(data_root).expanduser()
        if not root.is_dir():
            raise UsageError(f"--data-root {data_root}: not a folder")
        return hub.Resolved(root)

    def locate(self, options: DataOptions) -> Located:
        """The format and files in the data root (resolved once per data root)."""
        key = options.data_root
        if key not in self._located:
            origin = self._root(options.data_root)
            for fmt in self.all_formats():
                found = fmt.find(origin.path)
                if found is not None:
                    self._located[key] = Located(fmt, found, origin.path, origin)
                    break
            else:
                wanted = "; ".join(f.looks_for for f in self.all_formats())
                raise UsageError(f"dataset {self.name!r}: no known layout in {origin.path} (looked for: {wanted})")
        return self._located[key]

    def detect(self, options: DataOptions) -> str:
        return self.locate(options).format.name

    def data_files(self, task: str, split: str, options: DataOptions) -> list[tuple[str, str]]:
        where = self.locate(options)
        if where.format.name == "radfm-csv":
            delegate = self.radfm_class()  # type: ignore[misc]
            return [(part.subset, str(src.path)) for part, src, _ in
                    delegate.sources(task, split, replace(options, data_root=str(where.root)))]
        return [(self.subset, str(p)) for p in where.format.files(where.found, split)]

    def load(self, task: str, split: str, data_root: str | None = None,
             options: DataOptions | None = None) -> list[Sample]:
        options = replace(options or DataOptions(), data_root=data_root)
        if task != self.task:
            raise UsageError(f"dataset {self.name!r} has no task {task!r}; it covers {self.task}")
        if split not in SPLITS:
            raise UsageError(f"dataset {self.name!r} has splits {' and '.join(SPLITS)}, not {split!r}")
        where = self.locate(options)
        local = replace(options, data_root=str(where.root))
        if where.format.name == "radfm-csv":
            delegate = self.radfm_class()  # type: ignore[misc]
            self.max_images = delegate.max_images
            return delegate.load(task, split, str(where.root), local)
        src = Source(where.found, self.name, self.subset, split, task, local, str(where.found.parent))
        samples = where.format.read(where.found, src)
        cap = local.image_cap(None)
        capped = [cap_images(s, cap, local.seed) for s in samples]
        return plan_all(capped, self.family, PromptLibrary.discover(local), local.seed)


def load_json(path: Path) -> Any:
    """A whole JSON file; unreadable or malformed is one line naming it."""
    data = read_data_bytes(path)
    problem = utf16_problem(data)
    if problem:
        raise UsageError(f"{path}: {problem}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_json(text, path)


def find_named(root: Path, name: str) -> Path | None:
    """``root/name``, else ``name`` in one of root's sub-folders (a release unpacked into its own folder)."""
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if (folder / name).is_file():
            return folder / name
    return None


def checked_records(items: list[Any], src: Source, required: Sequence[str], reference_key: str, out: list[Sample],
                    where: Callable[[int], str] = lambda number: "") -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number, record)`` for each JSON object holding every ``required`` key.

    Any other item becomes a failed sample in ``out`` naming its row (``where`` prefixes the message,
    e.g. ``test[3]: ``), so one bad record is counted and the rest of the file is still read.
    """
    for number, record in enumerate(items, start=1):
        if not isinstance(record, dict):
            out.append(src.broken(number, f"{where(number)}expected a JSON object, got {type(record).__name__}"))
            continue
        missing = [k for k in required if k not in record]
        if missing:
            out.append(src.broken(number, f"{where(number)}missing key(s) {', '.join(missing)}",
                                  text(record.get(reference_key))))
            continue
        yield number, record
