"""RadFM-format datasets: every registered set reads from a generated data root, references are built
as RadFM builds them, bad rows and images are counted (or stop a --strict run), validate reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radbench import images, registry
from radbench.cli import main
from radbench.errors import SampleError, UsageError
from radbench.models.base import Adapter
from radbench.store import PREDICTIONS, RESULTS
from radbench.tasks.base import DataOptions, failed_row, load_split
from radbench.tasks.datasets.radfm_files import RATIONALE_SEPARATOR
from tests.support.data_roots import AUTHORS, build_radfm_root, image_root_arg, png, write_csv, write_json

# every dataset RadFM repackaged (iu-xray and slake-zh exist only in their publishers' layouts: test_data_published.py)
PUBLIC = [n for n in registry.names("datasets")
          if n != "demo" and getattr(registry.get("datasets", n), "radfm_class", True) is not None]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_radfm_root(tmp_path_factory.mktemp("radfm"))


def options(root: Path, **kw: object) -> DataOptions:
    return DataOptions(str(root), DataOptions.parse_image_roots([image_root_arg(root)]), **kw)  # type: ignore[arg-type]


def load(name: str, task: str, root: Path, split: str = "test", **kw: object) -> list:
    return load_split(registry.get("datasets", name)(), task, split, options(root, **kw))


@pytest.mark.parametrize("name", PUBLIC)
def test_every_dataset_reads_every_task_and_split_with_readable_images(name: str, root: Path) -> None:
    dataset = registry.get("datasets", name)()
    assert dataset.tasks and not dataset.is_demo
    for task in dataset.tasks:
        for split in ("test", "train"):
            samples = load(name, task, root, split)
            assert samples and not [s for s in samples if failed_row(s)]
            assert len({s.id for s in samples}) == len(samples)
            assert all(s.metadata["prompt"]["text"] and s.references for s in samples)
            for ref in {img for s in samples for img in s.images}:
                assert images.load(ref).ndim in (3, 4)


def test_references_are_built_as_radfm_builds_them(root: Path) -> None:
    report = load("radbench", "report", root)[0]
    assert report.references == ("Finding: Finding 1.Impression: Impression 1.",)
    assert report.context == "Patient 1. Presentation 1."
    rationale = load("radbench", "rationale", root)[0]
    assert rationale.references[0] == "Pneumonia is a disease." + RATIONALE_SEPARATOR + "Feature 1a. Feature 1b."
    assert rationale.metadata["title"] == "Pneumonia" and rationale.metadata["features"] == ["Feature 1a.", "Feature 1b."]
    vqa = load("radbench", "vqa", root)[0]
    assert vqa.references == ("two ",)  # RadFM strips every bullet from answers
    assert [(r.path, r.index, r.kind) for r in vqa.images] == [("npy/c1.npy", 0, "3d"), ("npy/c1.npy", 1, "3d")]
    case = load("pmc-casereport", "vqa", root)[0]
    assert case.context == "One.  Four.  Five.  Six.  Seven"  # first sentence + the last four, RadFM's way
    assert case.question == "What is shown?" and case.references == ("A mass",)
    assert [r.path for r in case.images] == ["figures/PMC1_1.jpg", "figures/PMC1_2.jpg"]
    yes_no, open_dx = load("chestxray", "diagnosis", root)[:2], load("chestxray", "diagnosis", root)[2]
    assert [s.references[0] for s in yes_no] == ["yes", "no"] and yes_no[0].options == ("yes", "no")
    assert open_dx.subset == "chestxray-open" and open_dx.references == ("Cardiomegaly",)
    modality = load("radio-modality", "diagnosis", root)
    assert modality[0].options == ("CT", "MRI", "X-ray") and [s.images[0].kind for s in modality] == ["2d", "2d", "3d"]
    # A spelling variant in the data_csv/ sub-folder is found.
    assert load("pmc-vqa", "vqa", root)[0].metadata["source"] == "PMC_VQA_test.csv row 1"


def test_radbench_yes_no_is_balanced_and_independent_of_the_seed(root: Path) -> None:
    samples = [s for s in load("radbench", "diagnosis", root) if s.subset == "radiofeatures-yes-no"]
    again = [s for s in load("radbench", "diagnosis", root, seed=7) if s.subset == "radiofeatures-yes-no"]
    assert [(s.id, s.references, s.metadata["target"]) for s in samples] == \
        [(s.id, s.references, s.metadata["target"]) for s in again]
    titles = {"Pneumonia", "Lung cancer", "Pneumothorax", "Glioma"}
    for yes, no in zip(samples[::2], samples[1::2]):
        assert (yes.references, no.references) == (("yes",), ("no",)) and yes.study_id == no.study_id
        assert no.metadata["target"] != yes.metadata["target"] and no.metadata["target"] in titles


def test_authors_absolute_paths_need_a_rewrite(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plain = load_split(registry.get("datasets", "radbench")(), "vqa", "test", DataOptions(str(root)))
    assert plain[0].images[0].path.startswith(AUTHORS)
    with pytest.raises(SampleError, match="outside the data root"):
        images.load(plain[0].images[0])
    code = main(["validate", "--task", "vqa", "--dataset", "radbench", "--data-root", str(root), "--quick"])
    out = capsys.readouterr().out
    assert code == 1 and "NOT READY" in out and f"--image-root {AUTHORS}=LOCAL" in out
    code = main(["validate", "--task", "vqa", "--dataset", "radbench", "--data-root", str(root),
                 "--image-root", image_root_arg(root)])
    out = capsys.readouterr().out
    assert code == 0 and "READY" in out and "rewritten by --image-root" in out


def test_missing_files_and_data_root_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for args, needle in ((["--data-root", str(tmp_path)], "vqarad_test.csv, VQA_RAD_test.csv"),
                         # no --data-root: the default Hub repo, which an offline machine without it in the cache refuses
                         ([], "flaviagiammarino/vqa-rad is not in the cache")):
        code = main(["validate", "--task", "vqa", "--dataset", "vqa-rad", *args])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1


def _broken_root(tmp_path: Path) -> Path:
    png(tmp_path / "images" / "a.png", 1)
    png(tmp_path / "images" / "b.png", 2)
    png(tmp_path / "images" / "t.png", 3)
    write_csv(tmp_path / "vqarad_train.csv", ["img_root_dir", "Figure_path", "Question", "Answer"],
              [["images", "t.png", "Is it normal?", "no"], ["images", "t.png", "What organ?", "lung"]])
    path = write_csv(tmp_path / "vqarad_test.csv", ["img_root_dir", "Figure_path", "Question", "Answer"], [
        ["images", "a.png", "Is it normal?", "yes"],
        ["images", "missing.png", "What organ?", "lung"],
        ["images", "b.png", "Which side?", "left"],
    ])
    data = path.read_bytes().replace(b"Which side?", b"Which s\xffde?").replace(b",left", b",l\xe9ft")
    path.write_bytes(data + b"images,b.png,Short row\n")
    return tmp_path


def test_bad_rows_become_failed_samples_naming_file_and_row(tmp_path: Path) -> None:
    root = _broken_root(tmp_path)
    samples = load("vqa-rad", "vqa", root)
    errors = {s.id: failed_row(s) for s in samples}
    assert errors["vqarad-test-00001"] is None and errors["vqarad-test-00002"] is None
    assert errors["vqarad-test-00003"] == f"{root / 'vqarad_test.csv'}: row 3: not UTF-8 text"
    assert errors["vqarad-test-00004"] == f"{root / 'vqarad_test.csv'}: row 4: missing field(s) Answer"
    with pytest.raises(UsageError, match=r"vqarad_test\.csv: row 3: not UTF-8 text"):
        load("vqa-rad", "vqa", root, strict=True)


def test_readers_reject_values_they_cannot_interpret(tmp_path: Path) -> None:
    write_csv(tmp_path / "chestxray_balance_test.csv", ["image_path", "disease", "label"],
              [["a.png", "Nodule", "1"], ["a.png", "Nodule", "2"]])
    write_csv(tmp_path / "chestxray_test.csv", ["image_path", "label"], [["a.png", "Nodule"]])
    samples = load("chestxray", "diagnosis", tmp_path)
    assert failed_row(samples[1]) and "label must be 0 or 1, got '2'" in failed_row(samples[1])
    write_csv(tmp_path / "filtered_case_report_test.csv", ["PMC_id", "img_ref", "context", "question", "answer"],
              [["PMC1", "oops[", "c", "Q:q", "A:a"]])
    assert "is not a list literal" in failed_row(load("pmc-casereport", "vqa", tmp_path)[0])
    write_json(tmp_path / "radiology_article_npy_test.json", [{"pre": "p", "pat": "q", "npy_path": "x.npy"}])
    assert "missing key(s) finding, impression" in failed_row(load("radbench", "report", tmp_path)[0])
    case = {"pre": "p", "pat": "q", "npy_path": "x.npy", "finding": "f", "impression": "i", "title": "t",
            "articles": ["a"], "radiographic_features": ["FEATURE"]}
    data = json.dumps([case, {**case, "pre": "p2"}]).encode().replace(b"FEATURE", b"F\xe9ATURE", 1)
    (tmp_path / "radiology_article_npy_test.json").write_bytes(data)
    samples = load("radbench", "rationale", tmp_path)
    assert failed_row(samples[0]).endswith("row 1: not UTF-8 text") and failed_row(samples[1]) is None
    (tmp_path / "radiology_article_npy_test.json").write_text('[{"pre": "p",', encoding="utf-8")
    with pytest.raises(UsageError, match=r"malformed JSON \(line 1, column 14"):
        load("radbench", "report", tmp_path)
    write_csv(tmp_path / "mimic_caption_test.csv", ["image_path", "text"], [["a.png", "x"]])
    with pytest.raises(UsageError, match="missing column.*label"):
        load("mimic-cxr", "report", tmp_path)


def _run(root: Path, out: Path, *extra: str) -> int:
    return main(["run", "--model", "retrieval", "--task", "vqa", "--dataset", "vqa-rad", "--data-root", str(root),
                 "--output", str(out), "--quiet", *extra])


def test_run_records_and_counts_bad_rows_and_images(tmp_path: Path) -> None:
    root = _broken_root(tmp_path / "data")
    out = tmp_path / "run"
    assert _run(root, out) == 0
    res = json.loads((out / RESULTS).read_text())
    assert res["n_samples"] == 4 and res["failures"]["count"] == 3
    assert set(res["failures"]["samples"]) == {"vqarad-test-00002", "vqarad-test-00003", "vqarad-test-00004"}
    assert "missing.png" in res["failures"]["samples"]["vqarad-test-00002"]
    assert res["prompts"]["mode"] == "radbench" and res["data_options"]["strict"] is False
    preds = {p["id"]: p for p in map(json.loads, (out / PREDICTIONS).read_text().splitlines())}
    assert preds["vqarad-test-00001"]["metadata"]["source"] == "vqarad_test.csv row 1"
    assert preds["vqarad-test-00001"]["metadata"]["prompt"]["text"] == "Is it normal?"
    assert preds["vqarad-test-00004"]["prediction"] == "" and "row 4" in preds["vqarad-test-00004"]["error"]


def test_strict_run_stops_with_one_line_naming_file_and_row(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _broken_root(tmp_path / "data")
    assert _run(root, tmp_path / "a", "--strict") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vqarad_test.csv: row 3: not UTF-8 text" in err
    # Rows fine, an image missing: stopped before any model loads, naming the row and the image.
    write_csv(root / "vqarad_test.csv", ["img_root_dir", "Figure_path", "Question", "Answer"],
              [["images", "a.png", "Is it normal?", "yes"], ["images", "missing.png", "What organ?", "lung"]])
    code = main(["run", "--model", "tests.test_data_radfm:NeverLoaded", "--task", "vqa", "--dataset", "vqa-rad",
                 "--data-root", str(root), "--output", str(tmp_path / "b"), "--quiet", "--strict"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "vqarad_test.csv row 2" in err and "missing.png" in err
    assert not (tmp_path / "b" / PREDICTIONS).exists()


class NeverLoaded(Adapter):
    """A model whose loading fails loudly: a --strict data problem must be reported before it."""

    name = "never-loaded"

    @classmethod
    def from_args(cls, **model_args: str) -> Adapter:
        raise AssertionError("the model was loaded before the data was checked")


def test_validate_reports_counts_and_problems_as_json(tmp_path: Path, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "ok.json"
    code = main(["validate", "--task", "diagnosis", "--dataset", "radbench", "--data-root", str(root),
                 "--image-root", image_root_arg(root), "--json", str(report)])
    capsys.readouterr()
    data = json.loads(report.read_text())
    assert code == 0 and data["ready"] and data["samples"] == 9
    assert data["images"]["2d"] == 2 and data["images"]["3d"] == 9 and not data["images"]["bad"]
    assert [f["subset"] for f in data["files"]] == ["radiofeatures-yes-no", "radiomodality"]
    bad = _broken_root(tmp_path / "bad")
    code = main(["validate", "--task", "vqa", "--dataset", "vqa-rad", "--data-root", str(bad), "--json", str(report)])
    out = capsys.readouterr().out
    data = json.loads(report.read_text())
    assert code == 1 and "NOT READY" in out and "BAD IMAGE images/missing.png" in out
    assert set(data["failed_rows"]) == {"vqarad-test-00003", "vqarad-test-00004"}
    assert data["images"]["bad"]["images/missing.png"]["samples"] == ["vqarad-test-00002"]


def test_data_options_are_refused_by_datasets_that_cannot_take_them() -> None:
    class Old:
        name, tasks = "old", ("vqa",)

        def load(self, task: str, split: str, data_root: str | None) -> list:
            return []

    assert load_split(Old(), "vqa", "test", DataOptions("x", seed=3)) == []
    with pytest.raises(UsageError, match="does not support --strict, --window"):
        load_split(Old(), "vqa", "test", DataOptions(strict=True, window="lung"))


def test_a_case_with_more_than_eight_scans_keeps_eight_drawn_from_the_seed(tmp_path: Path) -> None:
    """RadFM's loader keeps 8 images of a sample; radbench draws them per seed and keeps file order."""
    from tests.support.data_roots import npy_case

    root = build_radfm_root(tmp_path / "root")
    npy_case(root / "radiopaedia" / "npy" / "c1.npy", scans=11, seed=7)
    report = load("radbench", "report", root)[0]
    capped = report.metadata["images_capped"]
    assert len(report.images) == 8 and capped["of"] == 11 and capped["kept"] == sorted(capped["kept"])
    assert [r.index for r in report.images] == capped["kept"]
    assert report.metadata["prompt"]["image_positions"] and len(report.metadata["prompt"]["image_positions"]) == 8
    assert load("radbench", "report", root)[0].images == report.images  # the same draw every time
    draws = {tuple(load("radbench", "report", root, seed=s)[0].metadata["images_capped"]["kept"]) for s in range(6)}
    assert len(draws) > 1  # ... and another seed draws another subset
    everything = load("radbench", "report", root, max_images=0)[0]
    assert len(everything.images) == 11 and "images_capped" not in everything.metadata
    assert len(load("radbench", "report", root, max_images=3)[0].images) == 3
    assert "images_capped" not in load("radbench", "report", root)[1].metadata  # one scan: untouched
    with pytest.raises(UsageError, match="--max-images must be >= 0"):
        DataOptions(str(root), max_images=-1)


def test_max_images_is_reported_in_results(tmp_path: Path) -> None:
    from tests.support.data_roots import npy_case

    root = build_radfm_root(tmp_path / "root")
    npy_case(root / "radiopaedia" / "npy" / "c1.npy", scans=9, seed=7)
    out = tmp_path / "run"
    code = main(["run", "--model", "majority", "--task", "report", "--dataset", "radbench", "--data-root", str(root),
                 "--image-root", image_root_arg(root), "--output", str(out), "--quiet"])
    assert code == 0
    res = json.loads((out / RESULTS).read_text())
    assert res["data_options"]["max_images"] == 8 and res["data_options"]["samples_with_images_capped"] == 1
    from radbench.tasks.validate import render, validate

    report = validate(registry.get("datasets", "radbench")(), "report", options(root), read_pixels=False)
    assert report.capped == 1 and report.images_dropped == 1 and report.to_json()["images"]["capped_samples"] == 1
    assert "capped 1 sample(s) to the image limit" in render(report)
    record = next(p for p in map(json.loads, (out / PREDICTIONS).read_text().splitlines()) if len(p["images"]) == 8)
    assert record["metadata"]["images_capped"]["of"] == 9
