"""A dataset without code: a folder with a data file and a YAML/JSON config, run as --dataset PATH."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radbench.cli import main
from radbench.store import PREDICTIONS, RESULTS
from radbench.tasks.base import DataOptions, failed_row
from radbench.tasks.datasets.user import UserDataset
from tests.support.data_roots import png, write_csv


def make_folder(folder: Path, config: str, name: str = "radbench.yaml") -> Path:
    for i in range(4):
        png(folder / "pics" / f"{i}.png", i)
    rows = [
        {"qid": "a", "q": "Is the heart enlarged?", "ans": "yes", "img": "0.png", "choices": ["yes", "no"]},
        {"qid": "b", "q": "Which organ?", "ans": "lung", "img": "1.png", "choices": ["lung", "liver", "heart"]},
        {"qid": "c", "q": "Is there a fracture?", "ans": "no", "img": "missing.png", "choices": ["yes", "no"]},
    ]
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken json\n", encoding="utf-8")
    write_csv(folder / "train.csv", ["qid", "q", "ans", "img", "choices"],
              [["t1", "Is the heart enlarged?", "no", "2.png", "yes|no"], ["t2", "Which organ?", "liver", "3.png", "lung|liver|heart"]])
    (folder / name).write_text(config, encoding="utf-8")
    return folder


CONFIG = """
name: my-cxr
task: diagnosis
splits: {test: test.jsonl, train: train.csv}
columns: {id: qid, question: q, answer: ans, image: img, options: choices}
image_root: pics
prompt: "Question: {question} Options: {options}."
metrics: [accuracy]
"""


def test_folder_dataset_reads_config_rows_and_bad_lines(tmp_path: Path) -> None:
    ds = UserDataset(str(make_folder(tmp_path / "set", CONFIG)))
    assert ds.name == "my-cxr" and ds.tasks == ("diagnosis",) and ds.default_metrics == ("accuracy",)
    samples = ds.load("diagnosis", "test", None, DataOptions())
    assert [s.id for s in samples] == ["my-cxr-a", "my-cxr-b", "my-cxr-c", "my-cxr-test-00004"]
    first = samples[0]
    assert first.metadata["prompt"]["text"] == "Question: Is the heart enlarged? Options: yes, no."
    assert first.options == ("yes", "no") and first.answer_type == "closed" and first.references == ("yes",)
    assert first.images[0].path == "0.png" and first.images[0].root == str(tmp_path / "set" / "pics")
    assert failed_row(samples[3]) and "row 4: malformed JSON" in failed_row(samples[3])
    train = ds.load("diagnosis", "train", None, DataOptions())
    assert train[1].options == ("lung", "liver", "heart") and failed_row(train[1]) is None


def test_folder_dataset_runs_with_its_metrics_and_few_shot(tmp_path: Path) -> None:
    folder = make_folder(tmp_path / "set", CONFIG)
    out = tmp_path / "run"
    code = main(["run", "--model", "retrieval", "--task", "diagnosis", "--dataset", str(folder),
                 "--output", str(out), "--quiet"])
    assert code == 0
    res = json.loads((out / RESULTS).read_text())
    assert list(res["metrics"]) == ["accuracy"] and res["dataset"]["name"] == str(folder)
    assert res["failures"]["count"] == 2 and set(res["failures"]["samples"]) == {"my-cxr-c", "my-cxr-test-00004"}
    preds = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    ok = next(p for p in preds if p["id"] == "my-cxr-a")
    assert "Question: Is the heart enlarged? Options: yes, no." in ok["prompt"]
    # Few-shot from the folder's train split, with a model whose prompt takes exemplars (the
    # baselines refuse --shots: they ignore exemplars).
    shots = tmp_path / "shots"
    assert main(["run", "--model", "tests.support.adapters:EchoAdapter", "--task", "diagnosis", "--dataset", str(folder),
                 "--shots", "1", "--output", str(shots), "--quiet"]) == 0
    preds = [json.loads(line) for line in (shots / PREDICTIONS).read_text().splitlines()]
    assert len(next(p for p in preds if p["id"] == "my-cxr-a")["exemplar_ids"]) == 1


@pytest.mark.parametrize(("config", "needle"), [
    (CONFIG + "colour: red\n", "unknown setting(s) colour"),
    (CONFIG.replace("answer: ans, ", ""), "must name the answer column"),
    (CONFIG.replace("task: diagnosis\n", ""), "'task' is required"),
    (CONFIG.replace("{options}", "{nope}"), "prompt uses {nope}"),
    (CONFIG.replace("{options}", "{ans}"), "may not contain the answer"),
    (CONFIG.replace("prompt: \"", "prompt: \"{"), "prompt must be a template"),
    (CONFIG + "window: lungs\n", "window 'lungs'"),
    ("task: [unclosed\n", "malformed YAML"),
    (CONFIG.replace("splits: {test: test.jsonl, train: train.csv}", "data: nothere.csv"), "nothere.csv: file not found"),
])
def test_config_mistakes_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, needle: str) -> None:
    folder = make_folder(tmp_path / "set", config)
    code = main(["validate", "--task", "diagnosis", "--dataset", str(folder)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and needle in err and len(err.splitlines()) == 1


def test_json_config_window_and_unknown_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {"task": "vqa", "data": "test.jsonl", "columns": {"question": "q", "answer": "ans", "images": "img"},
              "window": "0,255", "image_root": "pics"}
    folder = make_folder(tmp_path / "set", json.dumps(config), name="dataset.json")
    samples = UserDataset(str(folder)).load("vqa", "test", None)
    assert samples[0].images[0].window == "0,255" and samples[0].metadata["prompt"]["text"] == "Is the heart enlarged?"
    override = UserDataset(str(folder)).load("vqa", "test", None, DataOptions(window="lung"))
    assert override[0].images[0].window == "lung"
    assert main(["validate", "--task", "vqa", "--dataset", str(tmp_path / "nowhere/")]) == 2
    assert "no such dataset name, folder or config file" in capsys.readouterr().err


def test_max_images_caps_a_user_dataset_only_when_asked(tmp_path: Path) -> None:
    config = {"task": "vqa", "data": "test.jsonl", "columns": {"question": "q", "answer": "ans", "images": "img"},
              "image_root": "pics"}
    folder = make_folder(tmp_path / "set", json.dumps(config), name="dataset.json")
    rows = [{"q": "Compare the studies.", "ans": "stable", "img": "0.png;1.png;2.png;3.png"}]
    (folder / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    whole = UserDataset(str(folder)).load("vqa", "test", None, DataOptions())[0]
    assert [i.path for i in whole.images] == ["0.png", "1.png", "2.png", "3.png"] and "images_capped" not in whole.metadata
    capped = UserDataset(str(folder)).load("vqa", "test", None, DataOptions(max_images=2))[0]
    kept = capped.metadata["images_capped"]["kept"]
    assert [i.path for i in capped.images] == [f"{k}.png" for k in kept] and len(kept) == 2
    assert len(capped.metadata["prompt"]["image_positions"]) == 2
