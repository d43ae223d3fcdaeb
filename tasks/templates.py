"""Prompts: radbench's own templates, and faithful RadFM prompts from the user's copy of RadFM's files.

Every built-in dataset subset belongs to a prompt *family* (yes/no disease question, chest X-ray
diagnosis, 3D report, ...). When a sample is read, :func:`plan` fixes its prompt: the text, and a
RadFM-style position for each image (0, or a character count; see :func:`radbench.tasks.base.interleave`).
The plan goes into ``Sample.metadata["prompt"]`` and from there into every prediction record.

- **radbench mode** (default): one template per family, written for radbench, images first.
- **faithful mode**: when RadFM's prompt files (``yes_no_prompt.json``, ``caption_prompt.json``, ...)
  are found under the data root, or given with ``--prompts DIR``, the prompt is assembled as RadFM's
  test datasets assemble it (history + presentation + template; CaseReport context + question;
  an image at the start, or before the question's last character). Where RadFM draws the template
  and the image positions at random, radbench draws them from a generator seeded by the run seed and
  the sample id: the same run gives the same prompts, and the choice is logged per sample.

RadFM's prompt files are never copied into radbench: they are read from the user's disk at run time.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Sequence

from radbench.errors import UsageError
from radbench.tasks.base import DataOptions, failed_row
from radbench.safe_io import parse_json
from radbench.types import Sample, stable_hash

# Changing any own template or assembly rule changes prompts: bump it (it is in every prompt plan).
TEMPLATES_VERSION = "1"


@dataclass(frozen=True)
class Family:
    """How one kind of item is asked.

    ``assembly``: ``instruction`` (the template alone), ``history`` (patient history and presentation,
    then the template), ``question`` (the dataset's question verbatim), ``case-report`` (the case
    context, a newline, the question). ``positions``: where RadFM puts the images: ``end`` (before
    the last character), ``coin`` (start or end, 50/50 per image), ``case-report`` (after the question
    or after the context, 50/50). ``substitute`` is the literal word RadFM replaces with the target
    (``disease`` in ``yes_no_prompt.json``); radbench's own templates use ``{target}``.
    """

    name: str
    own: str
    radfm_file: str | None = None
    radfm_key: str = "caption_prompt"
    substitute: str | None = None
    assembly: Literal["instruction", "history", "question", "case-report"] = "instruction"
    positions: Literal["end", "coin", "case-report"] = "end"


_YES_NO_OWN = "Is there evidence of {target} in this study? Answer yes or no."

FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("vqa", "{question}", assembly="question", positions="coin"),
        Family("case-report", "{question}", assembly="case-report", positions="case-report"),
        Family("yes-no", _YES_NO_OWN, "yes_no_prompt.json", substitute="disease"),
        Family("yes-no-scans", _YES_NO_OWN, "yes_no_prompt.json", substitute="disease", positions="coin"),
        Family("diagnosis-chest", "Which disease or abnormality does this chest radiograph show?", "cls_prompt.json"),
        Family("diagnosis-mammo", "Which abnormality does this mammogram show?", "mammo_prompt.json"),
        Family("diagnosis-spine", "Which abnormality does this spine radiograph show?", "spinexr_prompt.json"),
        Family("report-2d", "Write the findings and the impression of a radiology report for this image.",
               "report_prompt.json"),
        Family("report-scans", "Describe the findings and the impression of this study.", "caption_prompt.json",
               assembly="history", positions="coin"),
        Family("rationale", "What disease do these images show, and which radiographic features support the diagnosis?",
               "radiology_feature_prompt.json", assembly="history", positions="coin"),
        Family("modality", "Which imaging modality produced this image?", "modality_prompt.json", positions="coin"),
    )
}

RADFM_PROMPT_FILES = tuple(sorted({f.radfm_file for f in FAMILIES.values() if f.radfm_file}))
# Where a RadFM checkout or its prompt files may sit under the data root, in this order.
SEARCH_FOLDERS = ("", "prompts", "dataset", "src/Dataset/dataset")
RADBENCH_ONLY = "radbench"


def own_templates_hash() -> str:
    return stable_hash([TEMPLATES_VERSION, {n: [f.own, f.assembly] for n, f in sorted(FAMILIES.items())}])


class PromptLibrary:
    """The RadFM prompt files in use (faithful mode), or none (radbench's own templates)."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._loaded: dict[str, tuple[str, ...]] = {}

    @classmethod
    def discover(cls, options: DataOptions) -> "PromptLibrary":
        """``--prompts DIR`` (or ``radbench``), else the first search folder under the data root
        holding a RadFM prompt file, else radbench's own templates."""
        if options.prompts is not None:
            if options.prompts == RADBENCH_ONLY:
                return cls(None)
            folder = Path(options.prompts).expanduser()
            if not folder.is_dir():
                raise UsageError(f"--prompts {options.prompts}: not a folder")
            if not any((folder / name).is_file() for name in RADFM_PROMPT_FILES):
                raise UsageError(f"--prompts {folder}: holds none of RadFM's prompt files ({', '.join(RADFM_PROMPT_FILES)})")
            return cls(folder)
        if options.data_root:
            root = Path(options.data_root)
            for rel in SEARCH_FOLDERS:
                folder = root / rel
                if any((folder / name).is_file() for name in RADFM_PROMPT_FILES):
                    return cls(folder)
        return cls(None)

    @property
    def faithful(self) -> bool:
        return self.directory is not None

    def templates(self, family: Family) -> tuple[str, ...]:
        """RadFM's template list for ``family`` from the user's file; a missing or malformed file
        is a one-line error (mixing RadFM's and radbench's prompts in one run would hide it)."""
        assert self.directory is not None and family.radfm_file is not None
        key = f"{family.radfm_file}:{family.radfm_key}"
        if key not in self._loaded:
            path = self.directory / family.radfm_file
            if not path.is_file():
                raise UsageError(
                    f"{path}: not found; faithful prompts for {family.name!r} need it "
                    f"(use --prompts {RADBENCH_ONLY} for radbench's own templates)"
                )
            try:
                raw = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise UsageError(f"{path}: not UTF-8 text") from None
            data = parse_json(raw, path)
            items = data.get(family.radfm_key) if isinstance(data, dict) else None
            if not isinstance(items, list) or not items or not all(isinstance(t, str) and t for t in items):
                raise UsageError(f"{path}: expected a non-empty list of strings under {family.radfm_key!r}")
            self._loaded[key] = tuple(items)
        return self._loaded[key]

    def describe(self) -> dict[str, Any]:
        """For results.json: the mode, and the SHA-256 of every RadFM prompt file present."""
        out: dict[str, Any] = {"mode": "radfm" if self.faithful else "radbench",
                               "radbench_templates": own_templates_hash()}
        if self.directory is not None:
            out["radfm_files"] = {
                name: hashlib.sha256((self.directory / name).read_bytes()).hexdigest()
                for name in RADFM_PROMPT_FILES
                if (self.directory / name).is_file()
            }
        return out


def _instruction(sample: Sample, family: Family, template: str | None) -> str:
    """The request itself: RadFM's ``template`` (its literal word replaced, as RadFM does), or
    radbench's own template when ``template`` is None."""
    target = sample.metadata.get("target", "")
    if template is None:
        return family.own.replace("{target}", target)
    return template.replace(family.substitute, target) if family.substitute else template


def _text(sample: Sample, family: Family, template: str | None) -> str:
    """The whole prompt text: RadFM's exact concatenations in faithful mode, tidied in radbench mode."""
    meta = sample.metadata
    faithful = template is not None
    if family.assembly == "question":
        return sample.question if faithful else sample.question.strip()
    if family.assembly == "case-report":
        if faithful:
            return sample.context + "\n" + sample.question
        return "\n".join(p for p in (sample.context.strip(), sample.question.strip()) if p)
    instruction = _instruction(sample, family, template)
    if family.assembly == "history":
        if faithful:
            return meta.get("pat", "") + " " + meta.get("pre", "") + " " + instruction
        return " ".join(p for p in (meta.get("pat", "").strip(), meta.get("pre", "").strip(), instruction) if p)
    return instruction


def _faithful_positions(sample: Sample, family: Family, text: str, rng: random.Random) -> list[int]:
    if family.positions == "end":
        return [len(text) for _ in sample.images]
    if family.positions == "coin":
        return [0 if rng.random() < 0.5 else len(text) for _ in sample.images]
    return [len(text) if rng.random() > 0.5 else len(sample.context) for _ in sample.images]


def plan(sample: Sample, family: Family, library: PromptLibrary, seed: int) -> Sample:
    """``sample`` with its prompt fixed: ``metadata["prompt"]`` holds the text, the image positions,
    and what was chosen (mode, source file, template index), and ``question`` the question asked."""
    if failed_row(sample) is not None:
        return sample
    faithful = library.faithful
    template: str | None = None
    if faithful:
        rng = random.Random(f"radbench-prompt:{seed}:{sample.id}")
        templates = library.templates(family) if family.radfm_file else ("",)
        index = rng.randrange(len(templates))
        template = templates[index]
        text = _text(sample, family, template)
        positions = _faithful_positions(sample, family, text, rng)
        source = family.radfm_file or "dataset question"
    else:
        index, text, positions, source = 0, _text(sample, family, None), [0] * len(sample.images), "radbench"
    prompt = {"mode": "radfm" if faithful else "radbench", "family": family.name, "source": source,
              "template": index, "text": text, "image_positions": positions, "version": TEMPLATES_VERSION}
    question = sample.question
    if family.assembly in ("instruction", "history"):
        question = _instruction(sample, family, template)
    return replace(sample, question=question, metadata={**sample.metadata, "prompt": prompt})


def plan_all(samples: Sequence[Sample], family: str, library: PromptLibrary, seed: int) -> list[Sample]:
    return [plan(s, FAMILIES[family], library, seed) for s in samples]


def prompt_provenance(options: DataOptions) -> dict[str, Any]:
    """Which templates a run with ``options`` renders (radbench's own, or RadFM's files with their
    SHA-256), for results.json; the runner reaches it through the registry (``prompts.provenance``)."""
    return PromptLibrary.discover(options).describe()
