"""Public datasets in their publishers' layouts: each layout is detected, read into samples as RadFM's
readers produce them, runs end to end through the CLI with a baseline, and bad input is one line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Callable

import pytest

from radbench import images, registry
from radbench.cli import main
from radbench.errors import UsageError
from radbench.store import PREDICTIONS, RESULTS
from radbench.tasks.base import DataOptions, failed_row, load_split
from radbench.tasks.datasets.mimic_cxr_jpg import findings_impression
from tests.support import published_roots as pr

# name -> (dataset, task, builder, detected format)
LAYOUTS: dict[str, tuple[str, str, Callable[[Path], Path], str]] = {
    "vqa-rad-osf": ("vqa-rad", "vqa", pr.vqa_rad_osf, "vqa-rad-osf"),
    "vqa-rad-parquet": ("vqa-rad", "vqa", pr.vqa_rad_parquet, "hub-parquet"),
    "slake": ("slake", "vqa", pr.slake, "slake-json"),
    "pmc-vqa": ("pmc-vqa", "vqa", pr.pmc_vqa, "pmc-vqa-csv"),
    "mimic-cxr-jpg": ("mimic-cxr", "report", pr.mimic_cxr_jpg, "mimic-cxr-jpg"),
    "mimic-cxr-r2gen": ("mimic-cxr", "report", lambda r: pr.r2gen(r, "mimic_cxr"), "r2gen"),
    "iu-xray": ("iu-xray", "report", pr.r2gen, "r2gen"),
}


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return {name: build(tmp_path_factory.mktemp(name)) for name, (_, _, build, _) in LAYOUTS.items()}


def load(dataset: str, task: str, root: Path, split: str = "test", **kw: object) -> list:
    return load_split(registry.get("datasets", dataset)(), task, split, DataOptions(str(root), **kw))  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_is_detected_and_read_with_readable_images(layout: str, roots: dict[str, Path]) -> None:
    dataset, task, _, fmt = LAYOUTS[layout]
    ds = registry.get("datasets", dataset)()
    assert ds.detect(DataOptions(str(roots[layout]))) == fmt
    for split in ("test", "train"):
        samples = load(dataset, task, roots[layout], split)
        assert samples and not [s for s in samples if failed_row(s)], [failed_row(s) for s in samples]
        assert len({s.id for s in samples}) == len(samples) and all(s.references[0] for s in samples)
        assert all(s.metadata["prompt"]["text"] for s in samples)
        for ref in {img for s in samples for img in s.images}:
            assert images.load(ref).shape[0] == 3


def test_vqa_rad_osf_test_split_is_the_test_phrase_types(roots: dict[str, Path]) -> None:
    test = load("vqa-rad", "vqa", roots["vqa-rad-osf"])
    assert [s.metadata["qid"] for s in test] == ["1", "2", "3"]
    assert [(s.answer_type, s.options) for s in test[:3]] == [("closed", ("yes", "no")), ("closed", ("yes", "no")), ("open", ())]
    assert test[0].images[0].path == "synpic1.jpg" and test[0].images[0].root.endswith("VQA_RAD Image Folder")
    train = load("vqa-rad", "vqa", roots["vqa-rad-osf"], "train")
    assert [s.references[0] for s in train] == ["liver", "no", "12"]  # a JSON number answer is read as text


def test_vqa_rad_parquet_images_are_written_once_and_shared(roots: dict[str, Path]) -> None:
    test = load("vqa-rad", "vqa", roots["vqa-rad-parquet"])
    assert [s.references[0] for s in test] == ["yes", "left lobe", "no"]
    assert test[0].images[0] == test[1].images[0] and test[0].study_id == test[1].study_id
    assert test[0].images[0].path.endswith(".png") and test[2].images[0].path.endswith(".jpg")


def test_slake_english_by_default_and_chinese_on_request(roots: dict[str, Path]) -> None:
    en = load("slake", "vqa", roots["slake"])
    assert [s.question for s in en] == ["Does the picture contain lung?", "Which organ is abnormal?"]
    assert en[0].id == "slake-test-00001" and en[1].id == "slake-test-00003"  # row numbers of the file
    assert en[0].images[0].path == "xmlab1/source.jpg" and en[0].images[0].root.endswith("imgs")
    zh = load("slake-zh", "vqa", roots["slake"])
    assert [s.references[0] for s in zh] == ["是"]


def test_pmc_vqa_choices_are_options_and_clean_test_is_preferred(roots: dict[str, Path]) -> None:
    test = load("pmc-vqa", "vqa", roots["pmc-vqa"])
    assert len(test) == 2  # test_clean.csv, not test.csv
    first = test[0]
    assert first.options == ("Diffuse uptake pattern", "Focal uptake pattern", "No uptake pattern", "Cannot determine")
    assert first.references == ("Focal uptake pattern",) and first.answer_type == "closed"
    assert first.question.startswith("What is the uptake pattern?\nA:Diffuse")


def test_mimic_cxr_jpg_studies_frontal_views_and_sections(roots: dict[str, Path]) -> None:
    test = load("mimic-cxr", "report", roots["mimic-cxr-jpg"])
    assert [s.study_id for s in test] == ["50414267", "53189527"]  # the lateral-only study is not in the frontal set
    assert [i.path for i in test[0].images] == ["files/p10/p10000032/s50414267/d-pa-1.jpg"]
    assert test[0].references == ("Findings: The lungs are clear. No pleural effusion or pneumothorax. "
                                  "Impression: No acute cardiopulmonary process.",)
    assert test[1].references == ("Impression: Low lung volumes.",) and test[0].patient_id == "10000032"


def test_section_split_keeps_the_last_section_of_a_name() -> None:
    text = "INDICATION: x\nFINDINGS: first.\nIMPRESSION: one.\nFINDINGS:  second  one.\nRECOMMENDATION(S): call."
    assert findings_impression(text) == ("second one.", "one.")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_run_end_to_end_through_the_cli(layout: str, roots: dict[str, Path], tmp_path: Path) -> None:
    dataset, task, _, _ = LAYOUTS[layout]
    out = tmp_path / "run"
    code = main(["run", "--model", "retrieval", "--task", task, "--dataset", dataset, "--data-root", str(roots[layout]),
                 "--output", str(out), "--quiet"])
    assert code == 0
    res = json.loads((out / RESULTS).read_text())
    expected = load(dataset, task, roots[layout])
    assert res["dataset"]["name"] == dataset and res["n_samples"] == len(expected) and res["failures"]["count"] == 0
    preds = [json.loads(line) for line in (out / PREDICTIONS).read_text().splitlines()]
    assert sorted(p["id"] for p in preds) == sorted(s.id for s in expected)
    assert all(p["prediction"] and p["error"] is None for p in preds)


def test_validate_names_the_detected_format(roots: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    report = tmp_path / "v.json"
    code = main(["validate", "--task", "vqa", "--dataset", "slake", "--data-root", str(roots["slake"]), "--json", str(report)])
    out = capsys.readouterr().out
    assert code == 0 and "format slake-json" in out and "READY" in out
    data = json.loads(report.read_text())
    assert data["source"]["format"] == "slake-json" and data["files"][0]["path"].endswith("Slake1.0/test.json")


# --- bad input: one line, exit 2 (whole file unusable) or a failed sample naming the file and row ------

def _one_line_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_layout_lists_what_was_looked_for(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _one_line_error(["validate", "--task", "report", "--dataset", "iu-xray", "--data-root", str(tmp_path)], capsys)
    assert "no known layout" in err and "annotation.json" in err


def test_vqa_rad_osf_bad_json_and_bad_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "VQA_RAD Dataset Public.json").write_text("[{", encoding="utf-8")
    err = _one_line_error(["validate", "--task", "vqa", "--dataset", "vqa-rad", "--data-root", str(tmp_path)], capsys)
    assert "VQA_RAD Dataset Public.json: malformed JSON" in err
    pr.write_json(tmp_path / "VQA_RAD Dataset Public.json", [{"image_name": "a.jpg", "question": "q", "answer": "yes",
                                                             "answer_type": "MAYBE", "phrase_type": "test_para"}])
    err = _one_line_error(["validate", "--task", "vqa", "--dataset", "vqa-rad", "--data-root", str(tmp_path), "--strict"], capsys)
    assert "VQA_RAD Dataset Public.json: row 1: answer_type must be OPEN or CLOSED" in err


def test_parquet_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"question": ["q"], "answer": ["a"]}), tmp_path / "data" / "test-00000-of-00001.parquet")
    err = _one_line_error(["validate", "--task", "vqa", "--dataset", "vqa-rad", "--data-root", str(tmp_path)], capsys)
    assert "test-00000-of-00001.parquet: missing column(s) image" in err


def test_slake_record_without_answer_is_a_failed_sample(tmp_path: Path) -> None:
    root = pr.slake(tmp_path)
    records = json.loads((root / "Slake1.0" / "test.json").read_text())
    del records[0]["answer"]
    pr.write_json(root / "Slake1.0" / "test.json", records)
    samples = load("slake", "vqa", root)
    assert failed_row(samples[0]).endswith("test.json: row 1: missing key(s) answer")
    with pytest.raises(UsageError, match=r"test.json: row 1: missing key\(s\) answer"):
        load("slake", "vqa", root, strict=True)


def test_pmc_vqa_missing_column_and_bad_label(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pr.write_csv(tmp_path / "test_clean.csv", ["Figure_path", "Question", "Choice A"], [["a.jpg", "q", "A:x"]])
    err = _one_line_error(["validate", "--task", "vqa", "--dataset", "pmc-vqa", "--data-root", str(tmp_path)], capsys)
    assert "test_clean.csv: missing column(s) Answer_label, Choice B" in err
    root = pr.pmc_vqa(tmp_path / "ok")
    text = (root / "test_clean.csv").read_text().replace(",B\n", ",E\n", 1)
    (root / "test_clean.csv").write_text(text)
    assert "row 1: Answer_label must be one of A, B, C, D, got 'E'" in failed_row(load("pmc-vqa", "vqa", root)[0])


def test_mimic_missing_report_and_missing_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = pr.mimic_cxr_jpg(tmp_path / "a")
    (root / "mimic-cxr-reports" / "files" / "p10" / "p10000032" / "s50414267.txt").unlink()
    error = failed_row(load("mimic-cxr", "report", root)[0])
    assert "mimic-cxr-2.0.0-split.csv.gz: row 1: study 50414267: report files/p10/p10000032/s50414267.txt not found" in error
    (root / "mimic-cxr-2.0.0-metadata.csv.gz").write_bytes(gzip.compress(b"dicom_id,Rows\nx,1\n"))
    err = _one_line_error(["validate", "--task", "report", "--dataset", "mimic-cxr", "--data-root", str(root)], capsys)
    assert "mimic-cxr-2.0.0-metadata.csv.gz: missing column(s) ViewPosition" in err


def test_r2gen_bad_image_path_and_missing_split(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = pr.r2gen(tmp_path)
    data = json.loads((root / "iu_xray" / "annotation.json").read_text())
    data["test"][0]["image_path"] = "CXR1000_IM-0003/0.png"
    pr.write_json(root / "iu_xray" / "annotation.json", data)
    assert "annotation.json: row 1: test[0]: image_path must be a non-empty list" in failed_row(load("iu-xray", "report", root)[0])
    del data["test"]
    pr.write_json(root / "iu_xray" / "annotation.json", data)
    err = _one_line_error(["validate", "--task", "report", "--dataset", "iu-xray", "--data-root", str(root)], capsys)
    assert "annotation.json: expected" in err and "'test' list" in err
