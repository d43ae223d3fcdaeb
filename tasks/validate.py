"""``radbench validate``: is a dataset ready to evaluate, before any model is loaded?

It reads the dataset exactly as ``radbench run`` would (same options), then reports: the files found
(with the spelling matched), rows read and rows that failed, the prompt mode and files, the image
references (2D/3D, unique files, path prefixes rewritten by ``--image-root``, absolute prefixes that
still need a rewrite) and every missing or unreadable image with the samples that use it. Any failed
row or unusable image makes the report not ready (a non-zero exit), so a long run never discovers
them halfway.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from radbench import images
from radbench.errors import SampleError
from radbench.tasks.base import DataOptions, Dataset, failed_row, load_split
from radbench.tasks.templates import PromptLibrary
from radbench.types import ImageRef


@dataclass
class Report:
    dataset: str
    task: str
    split: str
    # the layout found in --data-root and where it came from (a Hub repo and commit), for datasets that detect one
    source: dict[str, Any] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)
    prompts: dict[str, Any] = field(default_factory=dict)
    samples: int = 0
    failed_rows: dict[str, str] = field(default_factory=dict)
    kinds: Counter = field(default_factory=Counter)
    unique_images: int = 0
    checked: str = "read"
    rewritten: Counter = field(default_factory=Counter)
    unmapped_prefixes: Counter = field(default_factory=Counter)
    bad_images: dict[str, tuple[str, list[str]]] = field(default_factory=dict)
    capped: int = 0  # samples that kept only --max-images (or the dataset's default cap) of their images
    images_dropped: int = 0

    @property
    def ready(self) -> bool:
        return self.samples > 0 and not self.failed_rows and not self.bad_images

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "task": self.task, "split": self.split, "ready": self.ready, "source": self.source,
            "files": [{"subset": s, "path": p} for s, p in self.files], "prompts": self.prompts,
            "samples": self.samples, "failed_rows": self.failed_rows, "images": {
                "references": sum(self.kinds.values()), "2d": self.kinds["2d"], "3d": self.kinds["3d"],
                "unique": self.unique_images, "checked": self.checked, "rewritten": dict(self.rewritten),
                "unmapped_absolute_prefixes": dict(self.unmapped_prefixes),
                "bad": {p: {"error": e, "samples": ids} for p, (e, ids) in self.bad_images.items()},
                "capped_samples": self.capped, "dropped_by_cap": self.images_dropped,
            },
        }


def _prefix(path: str, depth: int = 4) -> str:
    parts = Path(path).parts
    return str(Path(*parts[: min(depth, max(len(parts) - 1, 1))]))


def _files(dataset: Dataset, task: str, split: str, options: DataOptions) -> list[tuple[str, str]]:
    """Which file each subset reads, for datasets that can say (built-in and folder datasets)."""
    if hasattr(dataset, "data_files"):
        return dataset.data_files(task, split, options)
    if hasattr(dataset, "sources"):
        return [(part.subset, str(src.path)) for part, src, _ in dataset.sources(task, split, options)]
    if hasattr(dataset, "files"):
        path = dataset.files().get(split)
        return [(dataset.name, str(path))] if path else []
    return []


def validate(dataset: Dataset, task: str, options: DataOptions, split: str = "test", read_pixels: bool = True) -> Report:
    """Load ``split`` of ``task`` as a run would, and check every image reference it holds."""
    report = Report(getattr(dataset, "name", "?"), task, split, checked="read" if read_pixels else "exists")
    if hasattr(dataset, "locate"):
        report.source = dataset.locate(options).describe()
    report.files = _files(dataset, task, split, options)
    report.prompts = PromptLibrary.discover(options).describe()
    samples = load_split(dataset, task, split, options)
    report.samples = len(samples)
    users: dict[ImageRef, list[str]] = defaultdict(list)
    for sample in samples:
        error = failed_row(sample)
        if error is not None:
            report.failed_rows[sample.id] = error
        for ref in sample.images:
            users[ref].append(sample.id)
            report.kinds[ref.kind] += 1
        if "images_capped" in sample.metadata:
            report.capped += 1
            report.images_dropped += sample.metadata["images_capped"]["of"] - len(sample.images)
    report.unique_images = len(users)
    data_root = report.source.get("root") or options.data_root
    data_root = os.path.abspath(data_root) if data_root else None
    rewrite_roots = {os.path.abspath(new) for _, new in options.image_roots}
    for ref, ids in users.items():
        if ref.root is not None and os.path.abspath(ref.root) in rewrite_roots:
            report.rewritten[ref.root] += 1
        elif os.path.isabs(ref.path) and data_root is not None and not Path(ref.path).is_relative_to(data_root):
            report.unmapped_prefixes[_prefix(ref.path)] += 1
        try:
            images.read(ref) if read_pixels else images.check(ref)
        except SampleError as exc:
            report.bad_images[ref.ref_id()] = (str(exc), ids)
    return report


def render(report: Report, limit: int = 20) -> str:
    """The report as text for a terminal: a summary first, then the problems (first ``limit`` each)."""
    lines = [f"dataset {report.dataset!r}, task {report.task!r}, split {report.split!r}: "
             + ("READY" if report.ready else "NOT READY")]
    if report.source:
        origin = (f" from Hugging Face {report.source['repo_type']} repo {report.source['repo_id']} "
                  f"at commit {report.source['commit']}") if report.source.get("repo_id") else ""
        lines.append(f"  format {report.source['format']}{origin} in {report.source['root']}")
    for subset, path in report.files:
        lines.append(f"  file   {subset}: {path}")
    mode = report.prompts.get("mode")
    files = ", ".join(report.prompts.get("radfm_files", {})) or "radbench's own templates"
    lines.append(f"  prompts {mode}: {files}")
    lines.append(f"  rows   {report.samples} samples, {len(report.failed_rows)} failed")
    total = sum(report.kinds.values())
    lines.append(f"  images {total} references ({report.kinds['2d']} 2D, {report.kinds['3d']} 3D), "
                 f"{report.unique_images} unique: {report.unique_images - len(report.bad_images)} "
                 f"{'readable' if report.checked == 'read' else 'present'}, {len(report.bad_images)} unusable")
    if report.capped:
        lines.append(f"  capped {report.capped} sample(s) to the image limit (--max-images): {report.images_dropped} "
                     "image reference(s) left out, not checked")
    for root, count in sorted(report.rewritten.items()):
        lines.append(f"  rewritten by --image-root: {count} image(s) now under {root}")
    for prefix, count in sorted(report.unmapped_prefixes.items()):
        lines.append(f"  absolute paths outside the data root: {count} under {prefix} (map with --image-root {prefix}=LOCAL)")
    for sample_id, error in list(report.failed_rows.items())[:limit]:
        lines.append(f"  FAILED ROW {sample_id}: {error}")
    for ref_id, (error, ids) in list(report.bad_images.items())[:limit]:
        more = f" (+{len(ids) - 3} more)" if len(ids) > 3 else ""
        lines.append(f"  BAD IMAGE {ref_id}: {error} [used by {', '.join(ids[:3])}{more}]")
    hidden = max(0, len(report.failed_rows) - limit) + max(0, len(report.bad_images) - limit)
    if hidden:
        lines.append(f"  ... {hidden} more problem(s); use --json for the full list")
    return "\n".join(lines)
