"""A dataset without code: a folder with a data file and a small task config (``--dataset PATH``).

The folder holds ``radbench.yaml`` (or ``.yml``/``.json``, or ``dataset.yaml``/``.json``) next to a CSV,
JSON-list or JSONL file::

    task: vqa                      # the radbench task it feeds
    data: test.jsonl               # or splits: {test: test.csv, train: train.csv} (train: exemplars)
    columns: {question: q, answer: a, image: img}   # radbench field -> column name
    image_root: images             # relative to the folder (default: the folder itself)
    prompt: "{question}"           # optional template over the fields and columns
    metrics: [accuracy]            # optional; default: the task's metrics

``radbench validate --dataset PATH`` checks all of it. Unknown keys are errors, so a typo never
silently changes an evaluation.
"""

from __future__ import annotations

import string
from dataclasses import replace
from pathlib import Path
from typing import Any

from radbench import safe_io
from radbench.errors import UsageError
from radbench.images.windows import parse_window
from radbench.tasks.base import DataOptions, cap_images
from radbench.tasks.datasets.common import Row, Source, parse_json, read_data_bytes, read_rows, text
from radbench.tasks.datasets.radfm_files import YES_NO, clean_answer, kind_of
from radbench.tasks.templates import TEMPLATES_VERSION
from radbench.types import ImageKind, Sample, identifier

CONFIG_NAMES = ("radbench.yaml", "radbench.yml", "radbench.json", "dataset.yaml", "dataset.yml", "dataset.json")
KEYS = {"name", "description", "task", "data", "splits", "columns", "image_root", "image_kind", "prompt",
        "answer_type", "metrics", "window"}
FIELDS = {"id", "question", "answer", "image", "images", "context", "options", "patient_id", "study_id", "modality"}
LIST_SEPARATORS = {"images": ";", "options": "|"}


def _read_config(path: Path) -> dict[str, Any]:
    try:
        raw = read_data_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    if path.suffix == ".json":
        data = parse_json(raw, path)
    else:
        import yaml

        try:
            # no anchors/aliases (a few hundred bytes could expand to gigabytes) and bounded nesting
            data = safe_io.load_yaml(raw)
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: malformed YAML ({' '.join(str(exc).split())})") from None
        except safe_io.UnsafeInput as exc:
            raise UsageError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a mapping of settings")
    return data


class UserDataset:
    """A folder dataset; everything is checked when it is constructed, before any model loads."""

    is_demo = False

    def __init__(self, location: str) -> None:
        where = Path(location).expanduser()
        if where.is_file():
            config_path = where
        elif where.is_dir():
            found = [where / n for n in CONFIG_NAMES if (where / n).is_file()]
            if not found:
                raise UsageError(f"--dataset {location}: no {' or '.join(CONFIG_NAMES[:3])} in the folder")
            config_path = found[0]
        else:
            raise UsageError(f"--dataset {location}: no such dataset name, folder or config file")
        self.folder = config_path.parent
        self.config_path = config_path
        cfg = _read_config(config_path)
        unknown = sorted(set(cfg) - KEYS)
        if unknown:
            raise UsageError(f"{config_path}: unknown setting(s) {', '.join(unknown)} (allowed: {', '.join(sorted(KEYS))})")
        if not isinstance(cfg.get("task"), str):
            raise UsageError(f"{config_path}: 'task' is required (vqa, report, rationale or diagnosis)")
        self.name = str(cfg.get("name") or self.folder.name)
        self.tasks = (cfg["task"],)
        self.description = str(cfg.get("description") or f"user dataset in {self.folder}")
        self.splits = self._splits(cfg)
        self.columns = self._columns(cfg)
        self.image_kind = str(cfg.get("image_kind", "auto"))
        if self.image_kind not in ("auto", "2d", "3d"):
            raise UsageError(f"{config_path}: image_kind must be auto, 2d or 3d")
        self.answer_type = str(cfg.get("answer_type", "auto"))
        if self.answer_type not in ("auto", "open", "closed"):
            raise UsageError(f"{config_path}: answer_type must be auto, open or closed")
        self.prompt = cfg.get("prompt")
        if self.prompt is not None:
            try:
                if not isinstance(self.prompt, str):
                    raise ValueError("not a string")
                names = {name for _, name, _, _ in string.Formatter().parse(self.prompt) if name}
            except ValueError as exc:
                raise UsageError(f"{config_path}: prompt must be a template such as '{{question}}' ({exc})") from None
            if names & {"answer", self.columns["answer"]}:
                raise UsageError(f"{config_path}: the prompt may not contain the answer column")
        metrics = cfg.get("metrics")
        if metrics is not None and not (isinstance(metrics, list) and all(isinstance(m, str) for m in metrics)):
            raise UsageError(f"{config_path}: metrics must be a list of metric ids")
        self.default_metrics = tuple(metrics or ())
        root = cfg.get("image_root")
        self.image_root = str((self.folder / str(root)) if root else self.folder)
        self.window = None if cfg.get("window") is None else str(cfg["window"])
        parse_window(self.window)  # a bad window is a config error now, not a failure per image later

    def _splits(self, cfg: dict[str, Any]) -> dict[str, Path]:
        if ("data" in cfg) == ("splits" in cfg):
            raise UsageError(f"{self.config_path}: give exactly one of 'data' (one file) or 'splits' ({{test: ..., train: ...}})")
        splits = {"test": cfg["data"]} if "data" in cfg else cfg["splits"]
        if not isinstance(splits, dict) or "test" not in splits or set(splits) - {"test", "train"}:
            raise UsageError(f"{self.config_path}: 'splits' must map 'test' (and optionally 'train') to files")
        return {split: self.folder / str(name) for split, name in splits.items()}

    def _columns(self, cfg: dict[str, Any]) -> dict[str, str]:
        columns = cfg.get("columns") or {}
        if not isinstance(columns, dict):
            raise UsageError(f"{self.config_path}: 'columns' must map radbench fields to column names")
        unknown = sorted(set(columns) - FIELDS)
        if unknown:
            raise UsageError(f"{self.config_path}: unknown field(s) in columns: {', '.join(unknown)} (allowed: {', '.join(sorted(FIELDS))})")
        if "answer" not in columns:
            raise UsageError(f"{self.config_path}: columns must name the answer column (columns: {{answer: ...}})")
        if "image" in columns and "images" in columns:
            raise UsageError(f"{self.config_path}: columns may name 'image' or 'images', not both")
        return {k: str(v) for k, v in columns.items()}

    def files(self) -> dict[str, Path]:
        return dict(self.splits)

    def _list(self, value: Any, field: str) -> list[str]:
        if isinstance(value, list):
            return [text(v) for v in value]
        return [p.strip() for p in text(value).split(LIST_SEPARATORS[field]) if p.strip()]

    def _kind(self, path: str) -> ImageKind:
        return kind_of(path) if self.image_kind == "auto" else self.image_kind  # type: ignore[return-value]

    def _build(self, src: Source, row: Row) -> Sample:
        def get(field: str) -> Any:
            return row.values.get(self.columns[field]) if field in self.columns else None

        paths = self._list(get("images"), "images") if "images" in self.columns else (
            [text(get("image"))] if "image" in self.columns else [])
        images = tuple(src.image(p, self._kind(p)) for p in paths)
        answer = clean_answer(text(get("answer")))
        options = tuple(self._list(get("options"), "options")) if "options" in self.columns else ()
        if not options and answer.strip().lower() in YES_NO and self.answer_type != "open":
            options = YES_NO
        answer_type = self.answer_type if self.answer_type != "auto" else ("closed" if options else "open")
        question, context = text(get("question")), text(get("context"))
        fields = {"question": question, "context": context, "options": ", ".join(options)}
        fields.update({k: text(v) for k, v in row.values.items() if k not in fields and k != self.columns["answer"]})
        try:
            prompt_text = (self.prompt.format_map(fields) if self.prompt else
                           " ".join(p for p in (context.strip(), question.strip()) if p))
        except (KeyError, IndexError) as exc:
            raise UsageError(f"{self.config_path}: prompt uses {{{exc.args[0]}}}, which is neither a field nor a column "
                             f"of {src.where(row.number)}") from None
        except ValueError as exc:  # "{0}", "{q!x}", a format spec the value does not take
            raise UsageError(f"{self.config_path}: prompt cannot be filled in for {src.where(row.number)} ({exc})") from None
        plan = {"mode": "user", "family": "user", "source": self.config_path.name, "template": 0, "text": prompt_text,
                "image_positions": [0] * len(images), "version": TEMPLATES_VERSION}
        ident = text(get("id")) if "id" in self.columns else ""
        sample = src.sample(row.number, question=question, context=context, references=(answer,), images=images,
                            options=options, answer_type=answer_type, modality=text(get("modality")) or None,
                            patient_id=identifier(get("patient_id")), study_id=identifier(get("study_id")),
                            metadata={"prompt": plan})
        return replace(sample, id=f"{self.name}-{ident}") if ident else sample

    def load(self, task: str, split: str, data_root: str | None = None,
             options: DataOptions | None = None) -> list[Sample]:
        if task not in self.tasks:
            raise UsageError(f"dataset {self.name!r} is a {self.tasks[0]!r} dataset, not {task!r}")
        if split not in self.splits:
            raise UsageError(f"dataset {self.name!r} has no {split!r} split (its config names: {', '.join(self.splits)})")
        options = replace(options or DataOptions(), data_root=data_root)
        if self.window and not options.window:
            options = replace(options, window=self.window)
        src = Source(self.splits[split], self.name, self.name, split, task, options, self.image_root)
        out = []
        cap = options.image_cap(None)  # a user's dataset is not capped unless --max-images asks
        for row in read_rows(src.path, tuple(self.columns.values())):
            if row.problem:
                out.append(src.broken(row.number, row.problem, text(row.values.get(self.columns["answer"]))))
            else:
                out.append(cap_images(self._build(src, row), cap, options.seed))
        return out
