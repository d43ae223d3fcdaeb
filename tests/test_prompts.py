"""Prompts: radbench's own templates, faithful RadFM assembly from the user's prompt files (seeded,
logged), few-shot exemplars, and frozen prompt snapshots per task and model format.

Set ``RADBENCH_UPDATE_SNAPSHOTS=1`` to rewrite ``tests/snapshots/prompts.json`` after an intended
change; the diff then shows exactly which prompts changed.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Callable

import pytest

from radbench.cli import main
from radbench.errors import UsageError
from radbench.store import PREDICTIONS, RESULTS
from radbench.tasks.base import DataOptions, Task, interleave, select_exemplars
from radbench.tasks.demo import DemoDataset
from radbench.tasks.templates import FAMILIES, PromptLibrary
from radbench.types import ImageRef, Request, Sample
from tests.conftest import TESTS
from tests.support.data_roots import FAKE_PROMPTS, build_radfm_root, write_json, write_prompts

SNAPSHOTS = TESTS / "snapshots" / "prompts.json"
FROZEN = {
    "vqa": ["demo-cxr-vqa-test-00001", "demo-cxr-followup-test-00001", "demo-ct-vqa-test-00005"],
    "report": ["demo-cxr-report-test-00001", "demo-ct-report-test-00003"],
    "rationale": ["demo-ct-rationale-test-00001"],
    "diagnosis": ["demo-cxr-binary-test-00001", "demo-modality-test-00001"],
}


@pytest.fixture(scope="module")
def prompt_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_prompts(tmp_path_factory.mktemp("prompts"))


def demo(task: str, prompts: Path | None = None, seed: int = 0, split: str = "test") -> list[Sample]:
    return DemoDataset().load(task, split, None, DataOptions(prompts=str(prompts) if prompts else None, seed=seed))


def radfm_text_add_image(question: str, positions: list[int]) -> str:
    """RadFM's ``text_add_image`` restated: image i goes before the character at max(pos - 1, 0)."""
    slots: list[list[int]] = [[] for _ in question]
    for index, pos in enumerate(positions):
        slots[max(pos - 1, 0)].append(index)
    return "".join("".join(f"<{i}>" for i in slots[k]) + ch for k, ch in enumerate(question))


def test_interleave_places_images_exactly_as_radfm() -> None:
    rng = random.Random(0)
    for _ in range(300):
        question = "".join(rng.choice("ab ?.") for _ in range(rng.randint(1, 12)))
        positions = [rng.choice([0, len(question), rng.randint(0, len(question))]) for _ in range(rng.randint(0, 4))]
        refs = [ImageRef(str(i)) for i in range(len(positions))]
        rendered = "".join(s.text if s.image is None else f"<{s.image.path}>" for s in interleave(question, refs, positions))
        assert rendered == radfm_text_add_image(question, positions), (question, positions)


def test_radbench_mode_uses_own_templates_with_images_first() -> None:
    binary = demo("diagnosis")[0]
    plan = binary.metadata["prompt"]
    assert plan["mode"] == "radbench" and plan["source"] == "radbench" and plan["image_positions"] == [0]
    assert plan["text"] == FAMILIES["yes-no"].own.replace("{target}", binary.metadata["target"])
    segments = Task().query_segments(binary)
    assert segments[0].image == binary.images[0] and segments[1].text == plan["text"]
    rationale = demo("rationale")[0]
    assert rationale.metadata["prompt"]["text"] == f"{rationale.metadata['pat']} {rationale.metadata['pre']} {FAMILIES['rationale'].own}"


def test_faithful_mode_assembles_as_radfm_with_seeded_logged_choices(prompt_dir: Path) -> None:
    binary = demo("diagnosis", prompt_dir)[0]
    plan = binary.metadata["prompt"]
    templates = FAKE_PROMPTS["yes_no_prompt.json"]["caption_prompt"]
    assert plan["mode"] == "radfm" and plan["source"] == "yes_no_prompt.json"
    assert plan["text"] == templates[plan["template"]].replace("disease", binary.metadata["target"])
    assert plan["image_positions"] == [len(plan["text"])]  # Binary_Dataset: always "at the end"
    segments = Task().query_segments(binary)
    assert segments[-1].text == plan["text"][-1] and segments[-2].image is not None  # before the last character
    for sample in demo("report", prompt_dir) + demo("rationale", prompt_dir):
        meta = sample.metadata
        if meta["prompt"]["family"] in ("report-scans", "rationale"):
            file = FAMILIES[meta["prompt"]["family"]].radfm_file
            template = FAKE_PROMPTS[file]["caption_prompt"][meta["prompt"]["template"]]
            assert meta["prompt"]["text"] == meta["pat"] + " " + meta["pre"] + " " + template
    for sample in demo("vqa", prompt_dir):
        plan = sample.metadata["prompt"]
        if plan["family"] == "case-report":
            assert plan["text"] == sample.context + "\n" + sample.question
            assert set(plan["image_positions"]) <= {len(plan["text"]), len(sample.context)}
        else:
            assert plan["text"] == sample.question and set(plan["image_positions"]) <= {0, len(plan["text"])}
    positions = {p for s in demo("vqa", prompt_dir) for p in s.metadata["prompt"]["image_positions"]}
    assert 0 in positions and len(positions) > 2


def test_faithful_choices_depend_only_on_seed_and_sample_id(prompt_dir: Path) -> None:
    def choices(seed: int) -> dict[str, tuple]:
        return {s.id: (s.metadata["prompt"]["template"], tuple(s.metadata["prompt"]["image_positions"]))
                for task in ("vqa", "report", "diagnosis") for s in demo(task, prompt_dir, seed)}

    first = choices(0)
    assert first == choices(0)
    other = choices(1)
    assert first.keys() == other.keys() and sum(first[k] != other[k] for k in first) > len(first) // 4
    # A sample's choice does not depend on the others: reading a subset gives the same choices.
    alone = DemoDataset().load("diagnosis", "test", None, DataOptions(prompts=str(prompt_dir)))[:3]
    assert all(first[s.id] == (s.metadata["prompt"]["template"], tuple(s.metadata["prompt"]["image_positions"]))
               for s in alone)


def test_prompt_files_are_found_under_the_data_root_or_refused_loudly(tmp_path: Path) -> None:
    root = build_radfm_root(tmp_path / "root")
    write_prompts(root / "src" / "Dataset" / "dataset")
    library = PromptLibrary.discover(DataOptions(str(root)))
    assert library.faithful and library.directory == root / "src" / "Dataset" / "dataset"
    assert set(library.describe()["radfm_files"]) == set(FAKE_PROMPTS)
    assert not PromptLibrary.discover(DataOptions(str(root), prompts="radbench")).faithful
    (root / "src" / "Dataset" / "dataset" / "mammo_prompt.json").unlink()
    mammo = DataOptions(str(root), prompts=str(root / "src" / "Dataset" / "dataset"))
    from radbench.tasks.datasets.radfm import Mammo

    with pytest.raises(UsageError, match="mammo_prompt.json: not found; faithful prompts"):
        Mammo().load("diagnosis", "test", str(root), mammo)
    write_json(root / "src" / "Dataset" / "dataset" / "mammo_prompt.json", {"caption_prompt": []})
    with pytest.raises(UsageError, match="non-empty list of strings under 'caption_prompt'"):
        Mammo().load("diagnosis", "test", str(root), mammo)
    with pytest.raises(UsageError, match="holds none of RadFM's prompt files"):
        PromptLibrary.discover(DataOptions(prompts=str(tmp_path)))


def test_few_shot_exemplars_are_seeded_and_never_from_the_query_case() -> None:
    test, pool = demo("vqa"), demo("vqa", split="train")
    for sample in test:
        picked = select_exemplars(sample, pool, 3, seed=5)
        assert picked == select_exemplars(sample, pool, 3, seed=5) and len({p.id for p in picked}) == 3
        assert all(p.study_id != sample.study_id for p in picked)
    same_study = [s.study_id for s in test]
    assert len(same_study) != len(set(same_study))  # the guard above is exercised
    assert any(select_exemplars(s, pool, 3, 5) != select_exemplars(s, pool, 3, 6) for s in test)


def test_run_logs_the_prompt_choice_and_prompt_files(tmp_path: Path, prompt_dir: Path) -> None:
    out = tmp_path / "run"
    assert main(["run", "--model", "majority", "--task", "diagnosis", "--dataset", "demo", "--prompts", str(prompt_dir),
                 "--output", str(out), "--quiet", "--limit", "4"]) == 0
    res = json.loads((out / RESULTS).read_text())
    assert res["prompts"]["mode"] == "radfm" and len(res["prompts"]["radfm_files"]["yes_no_prompt.json"]) == 64
    pred = json.loads((out / PREDICTIONS).read_text().splitlines()[0])
    assert pred["metadata"]["prompt"]["source"] == "yes_no_prompt.json" and "template" in pred["metadata"]["prompt"]
    assert "Fixture:" in pred["prompt"]


def _formats() -> dict[str, Callable[[Request], str]]:
    """Each adapter's own rendering of a model-neutral request, plus radbench's neutral text."""
    from radbench.models import flamingo, llava_med, medvint, radfm

    def neutral(request: Request) -> str:
        return "\n".join(t.text("<image>") + ("" if t.answer is None else f" => {t.answer}") for t in request.turns)

    return {
        "neutral": neutral,
        "radfm": lambda r: radfm.render_prompt(r)[0],
        "openflamingo": lambda r: flamingo.openflamingo_prompt(r, "Short answer:")[0],
        "medflamingo": lambda r: flamingo.medflamingo_prompt(r)[0],
        "llava-med": llava_med.render_prompt,
        "medvint": lambda r: medvint.render_prompt(r, choice=False),
    }


def test_prompt_snapshots_do_not_change_silently(prompt_dir: Path) -> None:
    from radbench.runner import load_task

    formats = _formats()
    got: dict[str, str] = {}
    for mode, prompts in (("radbench", None), ("radfm", prompt_dir)):
        for task_name, ids in FROZEN.items():
            task = load_task(task_name)
            samples = {s.id: s for s in demo(task_name, prompts)}
            pool = demo(task_name, prompts, split="train")
            for shots in (0, 2):
                for sample_id in ids:
                    request = task.render(samples[sample_id], select_exemplars(samples[sample_id], pool, shots, seed=0))
                    for fmt, render in formats.items():
                        got[f"{mode}/{shots}-shot/{fmt}/{sample_id}"] = render(request)
    if os.environ.get("RADBENCH_UPDATE_SNAPSHOTS"):
        SNAPSHOTS.parent.mkdir(exist_ok=True)
        SNAPSHOTS.write_text(json.dumps(got, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    want = json.loads(SNAPSHOTS.read_text(encoding="utf-8"))
    changed = sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k))
    assert not changed, f"{len(changed)} prompt(s) changed, e.g. {changed[:3]}; if intended, set RADBENCH_UPDATE_SNAPSHOTS=1"
