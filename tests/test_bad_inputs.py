"""The bad input matrix (issue #9): every bad input ends as a one-line error or a counted failure.

Each case goes through the public command line (``radbench.cli.main`` in-process, one case as a
subprocess) and must end in exactly one of two ways:

* a **usage error**: one line on stderr naming the file, row or argument, exit code 2, no traceback;
* a **counted failure**: the run finishes, the sample is in ``predictions.jsonl`` with its ``error``,
  in ``results.json`` ``failures`` (count and samples), still in ``n_samples``, and the good samples
  score exactly as in a run without the bad one.

Fixture data are built per test in tmp dirs: user-dataset folders (``--dataset PATH``), RadFM's
formats (``--data-root``, tests/support/data_roots.py), and the real DICOM/NIfTI files that ship
in the pydicom and nibabel wheels. Models are the ``retrieval`` baseline (it reads every image),
the test EchoAdapter, and RadFM's tiny preset for the checkpoint cases.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pytest

from radbench import images
from radbench.cli import main
from radbench.runner import RunConfig, run
from radbench.store import PREDICTIONS, RESULTS, SCORES
from radbench.types import ImageRef
from tests.conftest import TESTS
from tests.support.data_roots import build_radfm_root, image_root_arg, png, write_csv

ROOT = TESTS.parent
ECHO = "tests.support.adapters:EchoAdapter"
GOOD = [  # (id, question, answer, image): every answer yes/no, so accuracy covers every sample
    ("g1", "Is the heart enlarged?", "yes", "0.png"),
    ("g2", "Is there an effusion?", "no", "1.png"),
    ("g3", "Is there a fracture?", "no", "2.png"),
    ("g4", "Is the lung collapsed?", "yes", "3.png"),
]
TRAIN = [("t1", "Is the heart enlarged?", "no", "4.png"), ("t2", "Is there an effusion?", "yes", "5.png"),
         ("t3", "Is there a nodule?", "no", "6.png")]
CONFIG = ("name: fx\ntask: vqa\nsplits: {{test: {test}, train: train.jsonl}}\n"
          "columns: {{id: id, question: q, answer: a, image: img}}\nimage_root: pics\n")
BAD_ROW = ("bad", "Is there a lesion?", "yes")


# ------------------------------------------------------------------------------------------------
# Helpers


def _row(ident: str, question: str, answer: str, image: str) -> dict[str, str]:
    return {"id": ident, "q": question, "a": answer, "img": image}


def make_dataset(folder: Path, extra: Sequence[tuple[str, str, str, str]] = (), test_file: str = "test.jsonl",
                 raw_test: bytes | None = None) -> Path:
    """A user-dataset folder: four good test rows (plus ``extra``), three exemplars, seven PNGs."""
    for i in range(7):
        png(folder / "pics" / f"{i}.png", i)
    rows = [_row(*r) for r in [*GOOD, *extra]]
    path = folder / test_file
    if raw_test is not None:
        path.write_bytes(raw_test)
    elif test_file.endswith(".csv"):
        write_csv(path, ["id", "q", "a", "img"], [list(r.values()) for r in rows])
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (folder / "train.jsonl").write_text("".join(json.dumps(_row(*r)) + "\n" for r in TRAIN), encoding="utf-8")
    (folder / "radbench.yaml").write_text(CONFIG.format(test=test_file), encoding="utf-8")
    return folder


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def assert_usage_error(result: tuple[int, str, str], *needles: str) -> str:
    """Exit 2, exactly one line on stderr, starting radbench: error:, containing every needle."""
    code, _, err = result
    assert code == 2, err
    assert err.startswith("radbench: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_user(capsys: pytest.CaptureFixture[str], folder: Path, out: Path, *extra: str, model: str = "retrieval") -> int:
    return cli(capsys, "run", "--model", model, "--task", "vqa", "--dataset", str(folder), "--output", str(out),
               "--quiet", *extra)[0]


def assert_counted_failure(out: Path, bad_id: str, needle: str, clean: Path | None = None) -> dict[str, Any]:
    """``bad_id`` failed (recorded, counted, in n_samples); every other sample scores as in ``clean``."""
    res = json.loads((out / RESULTS).read_text())
    preds = {p["id"]: p for p in lines(out / PREDICTIONS)}
    scores = {s["id"]: s for s in lines(out / SCORES)}
    assert set(preds) == set(scores) and len(preds) == res["n_samples"]
    assert res["failures"]["count"] == len(res["failures"]["samples"]) == 1
    assert needle in res["failures"]["samples"][bad_id]
    assert preds[bad_id]["error"] == res["failures"]["samples"][bad_id] and preds[bad_id]["prediction"] == ""
    assert scores[bad_id]["failed"] is True
    assert all(p["error"] is None for i, p in preds.items() if i != bad_id)
    # The reported accuracy is the mean over the scored samples, the failed one counting as wrong.
    scored = [s for s in scores.values() if s.get("scored", True) and s.get("accuracy") is not None]
    assert res["metrics"]["accuracy"]["n"] == len(scored)
    assert res["metrics"]["accuracy"]["value"] == pytest.approx(sum(s["accuracy"] for s in scored) / len(scored))
    if scores[bad_id].get("scored", True):
        assert scores[bad_id].get("accuracy") in (0.0, None) and scores[bad_id].get("rougeL") in (0.0, None)
    if clean is not None:
        want = json.loads((clean / RESULTS).read_text())
        clean_scores = {s["id"]: s for s in lines(clean / SCORES)}
        clean_preds = {p["id"]: p for p in lines(clean / PREDICTIONS)}
        assert res["n_samples"] == want["n_samples"] + 1 and set(clean_scores) == set(scores) - {bad_id}
        for sample_id, record in clean_scores.items():
            assert scores[sample_id] == record, sample_id
            assert preds[sample_id]["prediction"] == clean_preds[sample_id]["prediction"]
        n_clean = want["metrics"]["accuracy"]["n"]
        expected = want["metrics"]["accuracy"]["value"] * n_clean / len(scored)
        assert res["metrics"]["accuracy"]["value"] == pytest.approx(expected)
    return res


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The retrieval baseline on the four good rows: what every bad-row run must reproduce."""
    root = tmp_path_factory.mktemp("clean")
    folder = make_dataset(root / "fx")
    out = root / "run"
    run(RunConfig(model="retrieval", task="vqa", dataset=str(folder), output=out, quiet=True))
    assert json.loads((out / RESULTS).read_text())["failures"]["count"] == 0
    return out


# ------------------------------------------------------------------------------------------------
# Bad images: a failed sample, counted; with --strict a one-line stop naming the row


def _pkg_file(ref: str) -> Path:
    return images.resolve(ImageRef(ref, "3d"))


def _corrupt_png(pics: Path) -> str:
    (pics / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"garbage" * 20)
    return "corrupt.png"


def _truncated_dicom(pics: Path) -> str:
    import pydicom.data

    data = Path(pydicom.data.get_testdata_file("CT_small.dcm", download=False)).read_bytes()
    (pics / "ct.dcm").write_bytes(data[: len(data) // 2])
    return "ct.dcm"


def _nifti_with_nan(pics: Path) -> str:
    import nibabel as nib

    img = nib.load(str(_pkg_file("pkg:nibabel/tests/data/anatomical.nii")))
    data = np.asarray(img.get_fdata(dtype=np.float32))
    data[1, 2, 3] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), str(pics / "nan.nii.gz"))
    return "nan.nii.gz"


def _flat_nifti_as_volume(pics: Path) -> str:
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.ones((8, 8), np.float32), np.eye(4)), str(pics / "flat.nii"))
    return "flat.nii"  # a .nii is a volume (3D), but this one is a single 2D plane


def _one_dimensional_npy(pics: Path) -> str:
    np.save(pics / "line.npy", np.arange(10, dtype=np.float32))
    return "line.npy"


def _outside_root(pics: Path) -> str:
    png(pics.parent / "outside.png", 99)
    return "../outside.png"


def _absolute_outside(pics: Path) -> str:
    png(pics.parent / "elsewhere" / "abs.png", 98)
    return str(pics.parent / "elsewhere" / "abs.png")


def _package_escape(pics: Path) -> str:
    """A ``pkg:`` reference that climbs out of the package to a readable PNG outside the data root."""
    png(pics.parent / "elsewhere" / "pkg.png", 97)
    ups = "../" * len(_pkg_file("pkg:nibabel/tests/data/anatomical.nii").parents)
    return f"pkg:nibabel/{ups}{str(pics.parent / 'elsewhere' / 'pkg.png').lstrip('/')}"


def _package_dotted(pics: Path) -> str:
    return "pkg:no_such_pkg_radbench.sub/x.png"  # importlib would import the parent to look it up


def _fifo(pics: Path) -> str:
    os.mkfifo(pics / "fifo.png")  # opening it for reading would block forever
    return "fifo.png"


def _dev_zero_link(pics: Path) -> str:
    os.symlink("/dev/zero", pics / "zero.png")  # reading it never ends
    return "zero.png"


def _nul_byte(pics: Path) -> str:
    return "a\0b.png"


def _sparse_2gb(pics: Path) -> str:
    with open(pics / "huge.npy", "wb") as fh:
        fh.truncate(2 << 30)  # 2 GB of holes: instant to make, 2 GB to read
    return "huge.npy"


def _zero_npy(pics: Path) -> str:
    (pics / "zeros.npy").write_bytes(bytes(4096))  # a truncated or pre-allocated download: no header
    return "zeros.npy"


def bomb_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A valid PNG of a few hundred bytes whose header promises ``width x height`` pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\0" * (1 + width // 8) * 16, 9)  # the first rows of a 1-bit image, all black
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def _bomb(pics: Path) -> str:
    return bomb_png(pics / "bomb.png").name


def _small_bomb(pics: Path) -> str:
    return bomb_png(pics / "bomb2.png", 11000, 11000).name  # under PIL's own error threshold, over ours


IMAGE_CASES: dict[str, tuple[Callable[[Path], str], str]] = {
    "fifo": (_fifo, "not a regular file"),
    "symlink-to-dev-zero": (_dev_zero_link, "not a regular file"),
    "nul-byte-in-path": (_nul_byte, "NUL byte"),
    "sparse-2gb-file": (_sparse_2gb, "over the limit"),
    "decompression-bomb-png": (_bomb, "pixels"),
    "decompression-bomb-png-under-pil-threshold": (_small_bomb, "over the limit"),
    "missing-image": (lambda pics: "missing.png", "file not found"),
    "corrupt-png": (_corrupt_png, "unreadable"),
    "truncated-dicom": (_truncated_dicom, "unreadable DICOM"),
    "nifti-nan": (_nifti_with_nan, "NaN"),
    "volume-2d-plane": (_flat_nifti_as_volume, "declared 3d but has shape (1, 8, 8)"),
    "volume-1d-array": (_one_dimensional_npy, "unsupported array shape (10,)"),
    "zero-filled-npy": (_zero_npy, "is not a .npy file (no NumPy header: all zero bytes"),
    "path-escapes-root": (_outside_root, "outside the data root"),
    "absolute-path-outside-root": (_absolute_outside, "outside the data root"),
    "pkg-path-escapes-package": (_package_escape, "outside"),
    "pkg-dotted-package": (_package_dotted, "no_such_pkg_radbench.sub"),
}


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_bad_image_is_a_counted_failure(case: str, clean: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    make, needle = IMAGE_CASES[case]
    (tmp_path / "fx" / "pics").mkdir(parents=True)
    folder = make_dataset(tmp_path / "fx", [(*BAD_ROW, make(tmp_path / "fx" / "pics"))])
    out = tmp_path / "run"
    assert run_user(capsys, folder, out) == 0
    assert_counted_failure(out, "fx-bad", needle, clean)


@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_bad_image_with_strict_stops_naming_the_row(case: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    make, needle = IMAGE_CASES[case]
    (tmp_path / "fx" / "pics").mkdir(parents=True)
    folder = make_dataset(tmp_path / "fx", [(*BAD_ROW, make(tmp_path / "fx" / "pics"))])
    result = cli(capsys, "run", "--model", "retrieval", "--task", "vqa", "--dataset", str(folder), "--output",
                 str(tmp_path / "run"), "--quiet", "--strict")
    assert_usage_error(result, "test.jsonl row 5", needle)


def test_allow_outside_root_reads_the_escaping_paths(clean: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "fx" / "pics").mkdir(parents=True)
    pics = tmp_path / "fx" / "pics"
    folder = make_dataset(tmp_path / "fx", [("up", "Is there a lesion?", "yes", _outside_root(pics)),
                                            ("abs", "Is there a mass?", "no", _absolute_outside(pics))])
    out = tmp_path / "run"
    assert run_user(capsys, folder, out, "--allow-outside-root") == 0
    res = json.loads((out / RESULTS).read_text())
    assert res["failures"]["count"] == 0 and res["n_samples"] == len(GOOD) + 2
    assert res["data_options"]["allow_outside_root"] is True
    preds = {p["id"]: p for p in lines(out / PREDICTIONS)}
    assert preds["fx-up"]["images"][0]["sha256"] and preds["fx-abs"]["images"][0]["sha256"]
    clean_scores = {s["id"]: s for s in lines(clean / SCORES)}
    scores = {s["id"]: s for s in lines(out / SCORES)}
    assert all(scores[i] == s for i, s in clean_scores.items())


def test_radfm_formats_bad_images_are_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """RadFM's CSVs with --data-root: a corrupt 2D figure (VQA-RAD), a truncated 3D case file (Radiopaedia)."""
    root = build_radfm_root(tmp_path / "data")
    clean_out = {name: tmp_path / f"clean-{name}" for name in ("vqa-rad", "radbench")}
    args = {"vqa-rad": [], "radbench": ["--image-root", image_root_arg(root)]}
    for name, out in clean_out.items():
        assert cli(capsys, "run", "--model", "retrieval", "--task", "vqa", "--dataset", name, "--data-root", str(root),
                   "--output", str(out), "--quiet", *args[name])[0] == 0
    (root / "images" / "xr2.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")  # VQA_RAD_test.csv row 2
    case = root / "radiopaedia" / "npy" / "c2.npy"  # radiology_vqa_test.csv row 3
    case.write_bytes(case.read_bytes()[:200])
    for name, bad_id, needle in (("vqa-rad", "vqarad-test-00002", "xr2.png: unreadable"),
                                 ("radbench", "radiovqa-test-00003", "c2.npy: unreadable .npy")):
        out = tmp_path / f"bad-{name}"
        assert cli(capsys, "run", "--model", "retrieval", "--task", "vqa", "--dataset", name, "--data-root",
                   str(root), "--output", str(out), "--quiet", *args[name])[0] == 0
        res = assert_counted_failure(out, bad_id, needle)
        want = json.loads((clean_out[name] / RESULTS).read_text())
        assert res["n_samples"] == want["n_samples"]
        good = {s["id"]: s for s in lines(clean_out[name] / SCORES) if s["id"] != bad_id}
        assert all(s == good[s["id"]] for s in lines(out / SCORES) if s["id"] != bad_id)


# ------------------------------------------------------------------------------------------------
# Bad data files and rows


def test_csv_with_missing_columns_names_file_and_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_dataset(tmp_path / "fx", test_file="test.csv", raw_test=b"id,q,img\ng1,Is it?,0.png\n")
    result = cli(capsys, "run", "--model", "retrieval", "--task", "vqa", "--dataset", str(folder), "--output",
                 str(tmp_path / "run"))
    assert_usage_error(result, str(folder / "test.csv"), "missing column(s) a", "has: id, q, img")
    assert not (tmp_path / "run" / PREDICTIONS).exists()

    root = build_radfm_root(tmp_path / "data")
    write_csv(root / "data_csv" / "VQA_RAD_test.csv", ["img_root_dir", "Figure_path", "Question"],
              [["images", "xr1.png", "Is this normal?"]])
    result = cli(capsys, "validate", "--task", "vqa", "--dataset", "vqa-rad", "--data-root", str(root))
    assert_usage_error(result, "VQA_RAD_test.csv", "missing column(s) Answer")


def test_malformed_json_files_name_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_dataset(tmp_path / "fx", test_file="test.json", raw_test=b'[{"id": "g1", "q": "x", "a": "yes",\n')
    result = cli(capsys, "run", "--model", "retrieval", "--task", "vqa", "--dataset", str(folder), "--output",
                 str(tmp_path / "run"))
    assert_usage_error(result, str(folder / "test.json"), "malformed JSON (line 2")

    config = tmp_path / "cfg" / "radbench.json"
    make_dataset(config.parent)
    (config.parent / "radbench.yaml").unlink()
    config.write_text('{"task": "vqa", "data": "test.jsonl",,}')
    assert_usage_error(cli(capsys, "validate", "--task", "vqa", "--dataset", str(config.parent)),
                       str(config), "malformed JSON (line 1")

    root = build_radfm_root(tmp_path / "data")
    (root / "data_csv" / "radiology_article_npy_test.json").write_text('[{"pre": "x"}')
    assert_usage_error(cli(capsys, "run", "--model", "majority", "--task", "report", "--dataset", "radbench",
                           "--data-root", str(root), "--output", str(tmp_path / "r")),
                       "radiology_article_npy_test.json", "malformed JSON")
    (root / "data_csv" / "modality_set.json").write_text("{modality: [CT]}")
    assert_usage_error(cli(capsys, "validate", "--task", "diagnosis", "--dataset", "radio-modality",
                           "--data-root", str(root)), "modality_set.json", "not valid UTF-8 JSON")

    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "1", "prediction": "a", "reference": "a"}) + '\n{"id": "2",\n'
                     + json.dumps({"id": "3", "prediction": "a", "reference": "a"}) + "\n")
    assert_usage_error(cli(capsys, "score", str(preds), "--task", "vqa", "--output", str(tmp_path / "s")),
                       str(preds), "line 2")


def test_malformed_jsonl_row_is_a_counted_failure(clean: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    body = "".join(json.dumps(_row(*r)) + "\n" for r in GOOD) + '{"id": "bad", "q": "Is it?", "a": \n'
    folder = make_dataset(tmp_path / "fx", raw_test=body.encode())
    out = tmp_path / "run"
    assert run_user(capsys, folder, out) == 0
    res = json.loads((out / RESULTS).read_text())
    bad_id = "fx-test-00005"  # the line has no readable id: it is named by its row
    assert_counted_failure(out, bad_id, "row 5: malformed JSON")
    # Nothing to score against: counted, left out of the metrics, the good rows score as before.
    want = json.loads((clean / RESULTS).read_text())
    assert res["n_samples"] == want["n_samples"] + 1
    assert res["metrics"]["accuracy"] == want["metrics"]["accuracy"]
    clean_scores = {s["id"]: s for s in lines(clean / SCORES)}
    assert all(s == clean_scores[s["id"]] for s in lines(out / SCORES) if s["id"] != bad_id)


@pytest.mark.parametrize(("raw", "needle"), [
    (b"bad,Is there a \xffesion?,yes,4.png\n", "row 5: not UTF-8 text"),
    (b"bad,Is there a lesion?\n", "row 5: missing field(s) a, img"),
], ids=["non-utf8-row", "short-row"])
def test_bad_csv_row_is_a_counted_failure(raw: bytes, needle: str, clean: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    good = "id,q,a,img\n" + "".join(",".join(r) + "\n" for r in GOOD)
    folder = make_dataset(tmp_path / "fx", test_file="test.csv", raw_test=good.encode() + raw)
    out = tmp_path / "run"
    assert run_user(capsys, folder, out) == 0
    assert_counted_failure(out, "fx-test-00005", needle, clean)
    result = cli(capsys, "run", "--model", "retrieval", "--task", "vqa", "--dataset", str(folder), "--output",
                 str(tmp_path / "strict"), "--strict")
    assert_usage_error(result, f"{folder / 'test.csv'}: {needle}")


def test_lone_surrogate_escape_in_a_row_is_a_counted_failure(clean: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    """JSON can spell text no file can hold ("\\ud800"): the row fails, it does not crash the run's hashes."""
    body = "".join(json.dumps(_row(*r)) + "\n" for r in GOOD)
    body += '{"id": "bad", "q": "Is there a \\ud800 lesion?", "a": "yes", "img": "4.png"}\n'
    folder = make_dataset(tmp_path / "fx", raw_test=body.encode())
    out = tmp_path / "run"
    assert run_user(capsys, folder, out) == 0
    assert_counted_failure(out, "fx-test-00005", "row 5: not UTF-8 text", clean)


@pytest.mark.parametrize(("config", "needles"), [
    ("prompt: 'Q: {0}'\n", ["prompt cannot be filled in", "test.jsonl: row 1", "positional"]),
    ("prompt: '{q!x}'\n", ["prompt cannot be filled in", "test.jsonl: row 1", "conversion"]),
    ("prompt: '{q:d}'\n", ["prompt cannot be filled in", "test.jsonl: row 1", "format code 'd'"]),
    ('columns: {id: id, question: q, answer: a, image: img, "hist\\nory": h}\n', ["unknown field(s)", "hist\\nory"]),
], ids=["positional-field", "bad-conversion", "bad-format-spec", "newline-in-a-key"])
def test_config_mistakes_found_while_reading_are_one_line(config: str, needles: list[str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_dataset(tmp_path / "fx")
    base = CONFIG.format(test="test.jsonl")
    if config.startswith("columns:"):
        base = "".join(line + "\n" for line in base.splitlines() if not line.startswith("columns:"))
    (folder / "radbench.yaml").write_text(base + config)
    for args in (["validate", "--task", "vqa", "--dataset", str(folder)],
                 ["run", "--model", ECHO, "--task", "vqa", "--dataset", str(folder), "--output", str(tmp_path / "r")]):
        assert_usage_error(cli(capsys, *args), str(folder / "radbench.yaml"), *needles)


def test_a_quoted_newline_in_a_csv_header_stays_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_dataset(tmp_path / "fx", test_file="test.csv", raw_test=b'id,q,"a\nb",img\ng1,Is it?,yes,0.png\n')
    result = cli(capsys, "run", "--model", "retrieval", "--task", "vqa", "--dataset", str(folder), "--output",
                 str(tmp_path / "run"))
    assert_usage_error(result, str(folder / "test.csv"), "missing column(s) a", "a\\nb")


def test_radfm_row_a_reader_cannot_use_is_counted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_radfm_root(tmp_path / "data")
    write_csv(root / "data_csv" / "chestxray_balance_test.csv", ["image_path", "disease", "label"],
              [["images/xr1.png", "Cardiomegaly", "1"], ["images/xr2.png", "Cardiomegaly", "maybe"]])
    out = tmp_path / "run"
    assert cli(capsys, "run", "--model", "majority", "--task", "diagnosis", "--dataset", "chestxray", "--data-root",
               str(root), "--output", str(out), "--quiet")[0] == 0
    assert_counted_failure(out, "chestxray-yes-no-test-00002", "row 2: label must be 0 or 1, got 'maybe'")


def test_non_utf8_files_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_dataset(tmp_path / "fx")
    (folder / "radbench.yaml").write_bytes(b"task: vqa\nname: caf\xe9\n")
    assert_usage_error(cli(capsys, "validate", "--task", "vqa", "--dataset", str(folder)),
                       str(folder / "radbench.yaml"), "not UTF-8")

    preds = tmp_path / "preds.jsonl"
    preds.write_bytes(b'{"id": "1", "prediction": "caf\xe9", "reference": "a"}\n')
    assert_usage_error(cli(capsys, "score", str(preds), "--task", "vqa", "--output", str(tmp_path / "s")),
                       str(preds), "line 1", "utf-8")

    radfm = tmp_path / "radfm_output.csv"
    radfm.write_bytes(b"Question,Ground Truth,Pred,belong_to\n['q'],['a'],['\xe9'],['x']\n")
    assert_usage_error(cli(capsys, "score", str(radfm), "--task", "vqa", "--output", str(tmp_path / "s2")),
                       str(radfm), "row 1: not UTF-8 text")


# ------------------------------------------------------------------------------------------------
# Empty and huge predictions


def _score_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


BASE_RECORDS = [{"id": "a", "prediction": "yes", "reference": "yes"}, {"id": "b", "prediction": "no", "reference": "yes"},
                {"id": "c", "prediction": "left lower lobe", "reference": "left lower lobe"}]


@pytest.mark.parametrize(("record", "needle"), [
    ({"id": "x", "prediction": "yes", "reference": []}, "'reference' must be a string or a non-empty list of strings"),
    ({"id": "x", "prediction": "yes", "reference": None}, "'reference' must be a string"),
    ({"id": "x", "prediction": ["yes"], "reference": "yes"}, "'prediction' must be a string (or null"),
    ({"id": {"a": 1}, "prediction": "yes", "reference": "yes"}, "'id' must be a string or an integer"),
    ({"id": "x", "prediction": "yes", "reference": "yes", "options": 5}, "'options' must be a list of strings"),
    ({"id": "x", "prediction": "yes", "reference": "yes", "metadata": [1]}, "'metadata' must be an object"),
    ({"id": "x", "prediction": "yes", "reference": "yes", "dataset": ["a"]}, "'dataset' must be a string"),
    ({"id": "x", "prediction": "y\ud800", "reference": "yes"}, "lone surrogate"),
], ids=["reference-empty-list", "reference-null", "prediction-list", "id-object", "options-number", "metadata-list",
        "dataset-list", "lone-surrogate"])
def test_score_jsonl_field_of_the_wrong_type_names_record_and_field(record: dict[str, Any], needle: str,
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Never a traceback, and never a silent str() of a null or a list scored as if it were the text."""
    path = _score_jsonl(tmp_path / "p.jsonl", [BASE_RECORDS[0], record])
    result = cli(capsys, "score", str(path), "--task", "vqa", "--output", str(tmp_path / "out"))
    assert_usage_error(result, str(path), "record 2", needle)
    assert not (tmp_path / "out" / RESULTS).exists()


def test_score_radfm_csv_cell_spelling_a_lone_surrogate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    radfm = tmp_path / "radfm.csv"
    radfm.write_text("Question,Ground Truth,Pred,belong_to\n['q'],['a'],['b\\ud800'],['x']\n")
    assert_usage_error(cli(capsys, "score", str(radfm), "--task", "vqa", "--output", str(tmp_path / "out")),
                       str(radfm), "row 1, column 'Pred'", "lone surrogate")


@pytest.mark.parametrize("prediction", ["", None, pytest.param("x" * 1_000_000, marks=pytest.mark.slow),
                                        pytest.param(("effusion " * 120_000)[:1_000_000], marks=pytest.mark.slow)],
                         ids=["empty", "null", "1mb-word", "1mb-words"])
def test_score_keeps_empty_and_huge_predictions(prediction: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    records = [*BASE_RECORDS, {"id": "odd", "prediction": prediction, "reference": "no"},
               {"id": "odd-open", "prediction": prediction, "reference": "small pleural effusion"}]
    base = _score_jsonl(tmp_path / "base.jsonl", BASE_RECORDS)
    odd = _score_jsonl(tmp_path / "odd.jsonl", records)
    for path, out in ((base, tmp_path / "base"), (odd, tmp_path / "odd")):
        assert cli(capsys, "score", str(path), "--task", "vqa", "--output", str(out))[0] == 0
    res = json.loads((tmp_path / "odd" / RESULTS).read_text())
    assert res["n_samples"] == 5 and res["failures"]["count"] == 0
    scores = {s["id"]: s for s in lines(tmp_path / "odd" / SCORES)}
    assert scores["odd"]["accuracy"] == 0.0 and set(scores) == {r["id"] for r in records}
    base_scores = {s["id"]: s for s in lines(tmp_path / "base" / SCORES)}
    assert all(scores[i] == s for i, s in base_scores.items())  # the others score as without them
    assert res["metrics"]["accuracy"]["value"] == pytest.approx(1 / 3)  # a, odd (wrong), b (wrong): 1 of 3 closed
    for metric in res["metrics"].values():
        assert 0.0 <= metric["ci_low"] <= metric["value"] <= metric["ci_high"] <= 1.0
    if not prediction:
        assert scores["odd-open"]["token_recall"] == 0.0 and scores["odd-open"]["bleu1"] == 0.0


def test_run_keeps_empty_and_1mb_predictions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """EchoAdapter answers the question's last word: an empty question and a 1 MB word."""
    huge = "x" * 1_000_000
    folder = tmp_path / "fx"
    folder.mkdir()
    rows = [{"id": "empty", "q": "", "a": "no"}, {"id": "huge", "q": f"Is it {huge}", "a": "yes"},
            {"id": "ok", "q": "Answer yes", "a": "yes"}]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "radbench.yaml").write_text("name: fx\ntask: vqa\ndata: test.jsonl\ncolumns: {id: id, question: q, answer: a}\n")
    out = tmp_path / "run"
    assert run_user(capsys, folder, out, model=ECHO) == 0
    res = json.loads((out / RESULTS).read_text())
    preds = {p["id"]: p for p in lines(out / PREDICTIONS)}
    assert res["n_samples"] == 3 and res["failures"]["count"] == 0
    assert preds["fx-empty"]["prediction"] == "" and preds["fx-empty"]["error"] is None
    assert preds["fx-huge"]["prediction"] == huge and preds["fx-huge"]["error"] is None
    scores = {s["id"]: s for s in lines(out / SCORES)}
    assert [scores[f"fx-{i}"]["accuracy"] for i in ("empty", "huge", "ok")] == [0.0, 0.0, 1.0]
    assert res["metrics"]["accuracy"]["value"] == pytest.approx(1 / 3) and res["metrics"]["accuracy"]["n"] == 3
    # Re-running resumes the 1 MB record from disk instead of regenerating it.
    assert run_user(capsys, folder, out, model=ECHO) == 0
    again = json.loads((out / RESULTS).read_text())
    assert again["timing"]["generated_now"] == 0 and again["metrics"] == res["metrics"]


# ------------------------------------------------------------------------------------------------
# Unknown names, malformed arguments


@pytest.mark.parametrize(("args", "needles"), [
    (["score", "{preds}", "--task", "vqa-ish", "--output", "{out}"],
     ["unknown task 'vqa-ish'; available:", "diagnosis, rationale, report, vqa"]),
    (["score", "{preds}", "--task", "vqa", "--metrics", "accuracy,bleu9", "--output", "{out}"],
     ["unknown metric 'bleu9'; available:", "bleu4", "rougeL", "accuracy"]),
    (["validate", "--task", "vqa", "--dataset", "vqa_rad"], ["unknown dataset 'vqa_rad'; available:", "vqa-rad", "demo"]),
    (["validate", "--task", "captioning", "--dataset", "demo"], ["unknown task 'captioning'; available:", "report"]),
    (["run", "--model", "RadFM", "--task", "vqa", "--dataset", "demo", "--output", "{out}"],
     ["unknown model 'RadFM'; available:", "radfm", "majority", "retrieval", "llava-med"]),
    (["run", "--model", "tests.support.adapters:Nope", "--task", "vqa", "--dataset", "demo", "--output", "{out}"],
     ["'tests.support.adapters:Nope'", "no attribute 'Nope'"]),
    (["run", "--model", "majority", "--task", "vqa", "--dataset", "demo", "--model-args", "=x", "--output", "{out}"],
     ["--model-args: '=x' is not key=value"]),
    (["run", "--model", "majority", "--task", "vqa", "--dataset", "demo", "--model-args", "a=1,,b=2", "--output", "{out}"],
     ["--model-args: '' is not key=value"]),
    (["run", "--model", "radfm", "--task", "vqa", "--dataset", "demo", "--model-args", "checkpoint,preset=tiny-random",
      "--output", "{out}"], ["--model-args: 'checkpoint' is not key=value"]),
    (["run", "--model", "retrieval", "--task", "vqa", "--dataset", "demo", "--model-args", "image_weight=heavy",
      "--output", "{out}"], ["image_weight='heavy' is not a number"]),
    (["run", "--model", "retrieval", "--task", "vqa", "--dataset", "demo", "--model-args", "image_weight=2",
      "--output", "{out}"], ["image_weight must be within [0, 1]"]),
    (["run", "--model", ECHO, "--task", "vqa", "--dataset", "demo", "--model-args", "colour=red", "--output", "{out}"],
     ["unknown --model-args ['colour']"]),
    (["run", "--model", "retrieval", "--task", "vqa", "--dataset", "demo", "--gen-kwargs", "max_new_tokens",
      "--output", "{out}"], ["--gen-kwargs: 'max_new_tokens' is not key=value"]),
], ids=["score-task", "score-metric", "dataset", "validate-task", "model", "model-class", "model-args-empty-key",
        "model-args-empty-item", "model-args-no-value", "model-args-not-number", "model-args-out-of-range",
        "model-args-unknown", "gen-kwargs"])
def test_unknown_names_and_malformed_arguments(args: list[str], needles: list[str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    preds = _score_jsonl(tmp_path / "p.jsonl", BASE_RECORDS)
    filled = [a.format(preds=preds, out=tmp_path / "out") for a in args]
    assert_usage_error(cli(capsys, *filled), *needles)
    assert not (tmp_path / "out" / PREDICTIONS).exists()


def test_the_installed_command_prints_one_line_and_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "radbench", "run", "--model", "majority", "--task", "vqa",
                           "--dataset", "no-such-set", "--output", str(tmp_path)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "unknown dataset 'no-such-set'; available:" in proc.stderr


# ------------------------------------------------------------------------------------------------
# Checkpoints


@pytest.mark.parametrize("model", ["openflamingo", "medflamingo", "llava-med", "medvint"])
def test_missing_checkpoint_names_the_path(model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = cli(capsys, "run", "--model", model, "--task", "vqa", "--dataset", "demo", "--model-args",
                 "checkpoint=/nonexistent/ckpt", "--output", str(tmp_path / "run"))
    assert_usage_error(result, f"model '{model}'", "/nonexistent/ckpt", "does not exist")


def test_checkpoint_with_wrong_keys_or_corrupt_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from radbench.models import radfm
    from tests.test_adapter_radfm import _write_released_layout

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    (tmp_path / "ckpt").mkdir()
    try:
        ckpt = _write_released_layout(radfm.RadFMAdapter.from_args(preset="tiny-random"), tmp_path / "ckpt")
    finally:
        torch.set_num_threads(before)
    weights = ckpt / "pytorch_model.bin"
    state = torch.load(weights, weights_only=True)
    state["embedding_layer.fc_renamed.weight"] = state.pop("embedding_layer.fc.weight")
    torch.save(state, weights)
    args = ["run", "--model", "radfm", "--task", "vqa", "--dataset", "demo", "--model-args", f"checkpoint={ckpt}",
            "--output", str(tmp_path / "run"), "--quiet"]
    assert_usage_error(cli(capsys, *args), str(weights), "embedding_layer.fc.weight",
                       "embedding_layer.fc_renamed.weight")
    weights.write_bytes(b"not a checkpoint at all")
    err = assert_usage_error(cli(capsys, *args), f"cannot read checkpoint {weights}: not a checkpoint")
    assert "weights_only" not in err  # torch's advice to unpickle anyway is never repeated
    assert not (tmp_path / "run" / PREDICTIONS).exists()


# ------------------------------------------------------------------------------------------------
# Results files: an older schema, incomparable runs


@pytest.fixture(scope="module")
def demo_runs(demo_run: Callable[[str, str], Path]) -> dict[str, Path]:
    return {f"{model}-{task}": demo_run(model, task)
            for model, task in (("majority", "diagnosis"), ("retrieval", "diagnosis"), ("majority", "vqa"))}


def _older(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any]) -> Path:
    shutil.copytree(src, dst)
    data = json.loads((dst / RESULTS).read_text())
    edit(data)
    (dst / RESULTS).write_text(json.dumps(data))
    return dst


OLDER = {
    "version-0": lambda r: (r.update(schema_version="0"), r.pop("metric_configs"), r.pop("bootstrap")),
    "unversioned": lambda r: (r.pop("schema_version"), r.pop("failures")),
}


@pytest.mark.parametrize("which", sorted(OLDER))
def test_results_from_an_older_schema_are_refused(which: str, demo_runs: dict[str, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    old = _older(demo_runs["majority-diagnosis"], tmp_path / "old", OLDER[which])
    new = demo_runs["retrieval-diagnosis"]
    for args in (["compare", str(new), str(old)], ["compare", str(old), str(new), "--fail-on-regression"],
                 ["leaderboard", "build", str(new), str(old), "--output", str(tmp_path / "lb.json")]):
        assert_usage_error(cli(capsys, *args), str(old / RESULTS), "schema_version")
    assert not (tmp_path / "lb.json").exists()


def test_incomparable_runs_exit_2_naming_the_difference(demo_runs: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "compare", str(demo_runs["majority-vqa"]), str(demo_runs["majority-diagnosis"]),
                         "--metrics", "accuracy")
    assert_usage_error((code, out, err), "runs are not comparable: task.name: vqa (base) vs diagnosis (new)")
    # The same user dataset after one more (failed) row was added: another manifest, never paired.
    folder = make_dataset(tmp_path / "fx")
    before, after = tmp_path / "before", tmp_path / "after"
    assert run_user(capsys, folder, before) == 0
    make_dataset(folder, [(*BAD_ROW, "missing.png")])
    assert run_user(capsys, folder, after) == 0
    assert_usage_error(cli(capsys, "compare", str(before), str(after), "--fail-on-regression"),
                       "runs are not comparable: dataset.manifest_hash:")
    assert_usage_error(cli(capsys, "leaderboard", "build", str(before), str(after), "--output",
                           str(tmp_path / "lb.json")), "dataset.manifest_hash", "--allow-mixed")
    assert not (tmp_path / "lb.json").exists()


@pytest.mark.parametrize("case", ["decompression-bomb-png", "fifo", "symlink-to-dev-zero", "nul-byte-in-path"])
def test_validate_reports_hostile_images_without_a_traceback(case: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    make, needle = IMAGE_CASES[case]
    (tmp_path / "fx" / "pics").mkdir(parents=True)
    folder = make_dataset(tmp_path / "fx", [(*BAD_ROW, make(tmp_path / "fx" / "pics"))])
    code, out, err = cli(capsys, "validate", "--task", "vqa", "--dataset", str(folder))
    assert code == 1 and "Traceback" not in out + err and needle in out + err


def test_prefetch_without_preprocessing_reads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's prefetch for an adapter with no ``spec`` only hints the OS: no file is read whole."""
    from radbench import runner
    from radbench.types import Request, Segment, Turn

    png(tmp_path / "a.png", 1)
    os.symlink("/dev/zero", tmp_path / "zero.png")
    os.mkfifo(tmp_path / "fifo.png")
    refs = [ImageRef(name, root=str(tmp_path)) for name in ("a.png", "zero.png", "fifo.png")]
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"prefetch read {self} whole"))
    request = Request("s", (Turn(tuple(Segment(image=r) for r in refs), sample_id="s"),))
    runner._prefetch(object(), [request])  # returns at once: the FIFO and /dev/zero are skipped


@pytest.mark.parametrize("args, needle", [
    (["compare", "{out}/a", "{out}/b", "--min-effect", "nan", "--fail-on-regression"], "--min-effect nan is not a finite"),
    (["compare", "{out}/a", "{out}/b", "--min-effect", "inf"], "--min-effect inf is not a finite"),
    (["compare", "{out}/a", "{out}/b", "--min-effect", "-0.1"], "--min-effect -0.1 is out of range"),
    (["compare", "{out}/a", "{out}/b", "--iterations", "0"], "--iterations 0 is out of range"),
    (["run", "--model", "majority", "--task", "vqa", "--dataset", "demo", "--output", "{out}/r", "--seed", "-1"],
     "--seed -1 is out of range"),
    (["run", "--model", "majority", "--task", "vqa", "--dataset", "demo", "--output", "{out}/r", "--seed",
      str(2**63)], "--seed 9223372036854775808 is out of range"),
    (["run", "--model", "majority", "--task", "vqa", "--dataset", "demo", "--output", "{out}/r", "--batch-size", "0"],
     "--batch-size 0 is out of range"),
    (["run", "--model", "majority", "--task", "vqa", "--dataset", "demo", "--output", "{out}/r", "--limit", "-3"],
     "--limit -3 is out of range"),
    (["score", "{out}/p.jsonl", "--task", "vqa", "--output", "{out}/s", "--seed", "-5"], "--seed -5 is out of range"),
])
def test_numeric_arguments_are_checked_before_anything_loads(args: list[str], needle: str, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert_usage_error(cli(capsys, *[a.replace("{out}", str(tmp_path)) for a in args]), needle)


def test_an_unwritable_output_is_one_line_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from radbench import registry as reg

    (tmp_path / "a-file").write_text("x")
    loaded: list[str] = []
    real = reg.load_target
    monkeypatch.setattr(reg, "load_target", lambda *a, **k: loaded.append(a[0]) or real(*a, **k))
    for output in (tmp_path / "a-file" / "run", Path("/dev/full/run")):  # not a folder; a full device
        result = cli(capsys, "run", "--model", ECHO, "--task", "vqa", "--dataset", "demo", "--output", str(output),
                     "--quiet")
        assert_usage_error(result, "--output", "not writable")
    assert not any("adapters" in t for t in loaded), loaded


def test_compare_markdown_with_a_non_utf8_path_is_written_whole(demo_runs: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    odd = tmp_path / os.fsdecode(b"run-\xff")
    shutil.copytree(next(iter(demo_runs.values())), odd)
    md = tmp_path / "cmp.md"
    code, out, err = cli(capsys, "compare", str(odd), str(odd), "--markdown", str(md))
    assert code in (0, 1), err
    assert md.stat().st_size > 0
    md.read_text(encoding="utf-8")  # valid UTF-8
    board = tmp_path / "lb.json"
    code, out, err = cli(capsys, "leaderboard", "build", str(odd), "--output", str(board))
    assert code == 0, err
    assert board.stat().st_size > 0 and not list(tmp_path.glob(".lb.json.*"))


# ------------------------------------------------------------------------------------------------
# Nesting and size limits (radbench/safe_io.py): one line or a counted failure, never RecursionError

DEEP_JSON = "[" * 100_000 + "]" * 100_000  # CPython's json raises RecursionError on it
# Nested 150 levels: parses in CPython, but deeper than safe_io.MAX_NESTING (100).
NESTED_150 = json.dumps({"id": "x", "q": json.loads("[" * 150 + "]" * 150)})


def _deep_published(root: Path, layout: str) -> Path:
    from tests.support import published_roots as pr

    build, name = {"vqa-rad": (pr.vqa_rad_osf, "VQA_RAD Dataset Public.json"), "slake": (pr.slake, "Slake1.0/test.json"),
                   "iu-xray": (pr.r2gen, "iu_xray/annotation.json")}[layout]
    build(root)
    (root / name).write_text(DEEP_JSON)
    return root / name


@pytest.mark.parametrize("dataset", ["vqa-rad", "slake", "iu-xray"])
def test_deeply_nested_published_json_is_one_line(dataset: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = _deep_published(tmp_path / "root", dataset)
    task = "report" if dataset == "iu-xray" else "vqa"
    assert_usage_error(cli(capsys, "validate", "--task", task, "--dataset", dataset, "--data-root", str(tmp_path / "root")),
                       str(path), "nested deeper than 100 levels")


@pytest.mark.parametrize("name", ["radiology_article_npy_test.json", "modality_set.json"])
def test_deeply_nested_radfm_json_is_one_line(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build_radfm_root(tmp_path / "data")
    (root / "data_csv" / name).write_text(DEEP_JSON)
    task, dataset = ("report", "radbench") if name.startswith("radiology") else ("diagnosis", "radio-modality")
    assert_usage_error(cli(capsys, "validate", "--task", task, "--dataset", dataset, "--data-root", str(root)),
                       name, "nested deeper than 100 levels")


@pytest.mark.parametrize("body", [DEEP_JSON, NESTED_150], ids=["recursion", "150-levels"])
def test_deeply_nested_user_files_are_one_line_or_a_counted_failure(body: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    folder = make_dataset(tmp_path / "fx", test_file="test.json", raw_test=body.encode())
    assert_usage_error(cli(capsys, "validate", "--task", "vqa", "--dataset", str(folder)),
                       str(folder / "test.json"), "nested deeper than 100 levels")
    rows = "".join(json.dumps(_row(*r)) + "\n" for r in GOOD) + body + "\n"
    folder = make_dataset(tmp_path / "fl", raw_test=rows.encode())
    out = tmp_path / "run"
    assert run_user(capsys, folder, out) == 0
    assert_counted_failure(out, "fx-test-00005", "row 5: JSON nested deeper than 100 levels")
    for config, text in (("radbench.json", DEEP_JSON), ("radbench.yaml", "name: " + "[" * 100_000 + "]" * 100_000)):
        cfg = make_dataset(tmp_path / config)
        (cfg / "radbench.yaml").unlink()
        (cfg / config).write_text(text)
        assert_usage_error(cli(capsys, "validate", "--task", "vqa", "--dataset", str(cfg)),
                           str(cfg / config), "nested deeper than 100 levels")


def test_yaml_aliases_never_expand(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A billion-laughs config (about 400 bytes, 9**8 strings once expanded) is refused from its first anchor."""
    import resource

    levels = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for prev, name in zip("abcdefg", "bcdefgh"):
        levels.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    text = "task: vqa\ndata: test.jsonl\ncolumns: {question: q, answer: a, image: img}\nname: {" + ", ".join(levels) + "}\n"
    assert 350 < len(text) < 500
    folder = make_dataset(tmp_path / "fx")
    (folder / "radbench.yaml").write_text(text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert_usage_error(cli(capsys, "validate", "--task", "vqa", "--dataset", str(folder)),
                       str(folder / "radbench.yaml"), "YAML anchor &a at line 4", "anchors and aliases are not allowed")
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing was expanded


@pytest.mark.parametrize("literal, needle", [
    ("[" * 300 + "]" * 300, "nested deeper than 100 levels"),
    ("[" + "-" * 100_000 + "1]", "too deep or too large to parse"),  # MemoryError inside CPython's parser
    ("[" + "1+" * 50_000 + "1]", "too deep or too large to parse"),  # RecursionError building the AST
])
def test_hostile_list_literals_are_one_line_or_a_counted_failure(literal: str, needle: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    radfm = tmp_path / "radfm.csv"
    write_csv(radfm, ["Question", "Ground Truth", "Pred", "belong_to"], [["['q']", "['a']", literal, "['x']"]])
    assert_usage_error(cli(capsys, "score", str(radfm), "--task", "vqa", "--output", str(tmp_path / "out")),
                       str(radfm), "row 1, column 'Pred'", needle)

    root = build_radfm_root(tmp_path / "data")
    path = root / "data_csv" / "filtered_case_report_test.csv"
    write_csv(path, ["PMC_id", "img_ref", "context", "question", "answer"],
              [["PMC1", "['1']", "A case.", "Q:Is it?", "A:yes"], ["PMC2", literal, "A case.", "Q:Is it?", "A:no"]])
    from radbench.tasks.base import DataOptions, failed_row, load_split
    from radbench import registry

    samples = load_split(registry.get("datasets", "pmc-casereport")(), "vqa", "test",
                         DataOptions(str(root), DataOptions.parse_image_roots([image_root_arg(root)])))
    problems = [failed_row(s) for s in samples]
    assert problems[0] is None and needle in (problems[1] or ""), problems


def test_deeply_nested_score_and_store_lines_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from radbench.errors import UsageError
    from radbench.store import read_jsonl

    preds = tmp_path / "preds.jsonl"
    preds.write_text(json.dumps({"id": "1", "prediction": "a", "reference": "a"}) + "\n" + DEEP_JSON + "\n")
    assert_usage_error(cli(capsys, "score", str(preds), "--task", "vqa", "--output", str(tmp_path / "s")),
                       str(preds), "line 2", "nested deeper than 100 levels")
    log = tmp_path / PREDICTIONS
    log.write_text(NESTED_150 + "\n" + json.dumps({"key": "k", "id": "x"}) + "\n")
    with pytest.raises(UsageError, match="line 1 .*nested deeper than 100 levels"):
        read_jsonl(log)


# ------------------------------------------------------------------------------------------------
# A disk that fills up mid-run: one line, exit 2, nothing already written is lost


class _FillingFile:
    """A text file that accepts ``budget`` more characters, writes part of the next write, then fails
    with ENOSPC as a full disk does (every later write and flush fails too)."""

    def __init__(self, real: Any, budget: list[int]) -> None:
        self.real, self.budget = real, budget

    def write(self, text: str) -> int:
        import errno

        if len(text) > self.budget[0]:
            self.real.write(text[: self.budget[0]])
            self.real.flush()
            self.budget[0] = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget[0] -= len(text)
        return self.real.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __enter__(self) -> "_FillingFile":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.real.close()


def test_a_disk_filling_up_mid_run_is_one_line_and_loses_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from radbench import store

    args = ["run", "--model", ECHO, "--task", "vqa", "--dataset", "demo", "--limit", "12", "--batch-size", "2", "--quiet"]
    assert cli(capsys, *args, "--output", str(tmp_path / "clean"))[0] == 0
    clean = (tmp_path / "clean" / PREDICTIONS).read_text()
    record = len(clean.splitlines()[0]) + 1

    out = tmp_path / "full"
    budget = [int(record * 5.5)]  # two batches and a half of the third fit on the disk
    monkeypatch.setattr(store, "open", lambda *a, **k: _FillingFile(open(*a, **k), budget), raising=False)
    err = assert_usage_error(cli(capsys, *args, "--output", str(out)), str(out / PREDICTIONS), "No space left on device",
                             "re-run the same command to resume")
    written = (out / PREDICTIONS).read_text()
    whole = written[: written.rfind("\n") + 1].splitlines()
    assert len(whole) >= 4 and written != whole  # the first batches are whole lines, then a torn one
    assert not (out / RESULTS).exists(), err
    monkeypatch.undo()

    real_fsync = os.fsync

    def full_disk(fd: int) -> None:  # the up-front write check still passes (it writes 4 KiB)
        if ".radbench-write-check." not in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    def temporaries() -> list[str]:
        return [p.name for p in out.iterdir() if p.name.startswith(".") and not p.name.startswith(".radbench.lock")]

    # The background fsync of an append fails the same way.
    monkeypatch.setattr(store.os, "fsync", full_disk)
    assert_usage_error(cli(capsys, *args, "--output", str(out)), str(out / PREDICTIONS), "No space left on device")
    monkeypatch.undo()
    assert not temporaries() and not (out / RESULTS).exists()

    # Space freed: the same command resumes, keeps what was written and ends as an uninterrupted run.
    assert cli(capsys, *args, "--output", str(out))[0] == 0
    assert (out / PREDICTIONS).read_text() == clean
    assert (out / SCORES).read_text() == (tmp_path / "clean" / SCORES).read_text()

    # A re-run that cannot write its files: one line, the previous files kept whole, no temporaries.
    before = {name: (out / name).read_bytes() for name in (PREDICTIONS, SCORES, RESULTS)}
    monkeypatch.setattr(store.os, "fsync", full_disk)
    assert_usage_error(cli(capsys, *args, "--output", str(out)), "No space left on device")
    monkeypatch.undo()
    assert {name: (out / name).read_bytes() for name in before} == before and not temporaries()


# ------------------------------------------------------------------------------------------------
# Minor: text encodings and missing identifiers


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le"])
def test_a_utf16_csv_is_named_as_such_without_raw_nul_bytes(encoding: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    raw = "id,q,a,img\ng1,Is it?,yes,0.png\n".encode(encoding)  # with and without a byte-order mark
    folder = make_dataset(tmp_path / "fx", test_file="test.csv", raw_test=raw)
    err = assert_usage_error(cli(capsys, "validate", "--task", "vqa", "--dataset", str(folder)),
                             str(folder / "test.csv"), "file is UTF-16", "save it as UTF-8")
    assert "\0" not in err


def test_a_nan_or_empty_patient_id_is_missing_not_a_cluster(tmp_path: Path) -> None:
    from radbench.tasks.base import DataOptions
    from radbench.tasks.datasets.user import UserDataset

    folder = make_dataset(tmp_path / "fx")
    rows = [{"id": "n1", "q": "Is it?", "a": "yes", "img": "0.png", "pid": float("nan"), "sid": "s1"},
            {"id": "n2", "q": "Is it?", "a": "no", "img": "1.png", "pid": "nan", "sid": "s2"},
            {"id": "n3", "q": "Is it?", "a": "no", "img": "2.png", "pid": " ", "sid": None},
            {"id": "n4", "q": "Is it?", "a": "no", "img": "3.png", "pid": "p7", "sid": "NaN"}]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))  # NaN as JSON writes it
    (folder / "radbench.yaml").write_text(CONFIG.format(test="test.jsonl").replace(
        "image: img}", "image: img, patient_id: pid, study_id: sid}"))
    samples = UserDataset(str(folder)).load("vqa", "test", None, DataOptions())
    assert [s.cluster_id for s in samples] == ["s1", "s2", "fx-n3", "p7"]
    assert [(s.patient_id, s.study_id) for s in samples] == [(None, "s1"), (None, "s2"), (None, None), ("p7", None)]

    preds = tmp_path / "p.jsonl"
    preds.write_text("".join(json.dumps({"id": r["id"], "prediction": "yes", "reference": r["a"], "patient_id": r["pid"]})
                             + "\n" for r in rows))
    from radbench.rescore import score_file

    res = score_file(preds, "vqa", "accuracy", tmp_path / "out", 0)
    clusters = [json.loads(line).get("cluster") for line in (tmp_path / "out" / SCORES).read_text().splitlines()]
    assert res["n_samples"] == 4 and clusters == ["n1", "n2", "n3", "p7"], clusters


def test_a_zero_filled_npy_is_named_for_what_it_is(tmp_path: Path) -> None:
    """safe_io.npy_header_problem: what the image reader reports instead of numpy's "pickled data"."""
    from radbench import safe_io

    (tmp_path / "zero.npy").write_bytes(b"\0" * 4096)
    (tmp_path / "empty.npy").write_bytes(b"")
    np.save(tmp_path / "good.npy", np.zeros((2, 2)))
    assert safe_io.npy_header_problem(tmp_path / "zero.npy") == f"{tmp_path / 'zero.npy'} is not a .npy file (no NumPy header: all zero bytes at the start)"
    assert "empty" in (safe_io.npy_header_problem(tmp_path / "empty.npy") or "")
    assert safe_io.npy_header_problem(tmp_path / "good.npy") is None


@pytest.mark.parametrize(("name", "content"), [
    ("config.json", "[" * 200000),              # nested past the interpreter's own limit
    ("config.json", '{"model_type": "llava_mistral", '),    # cut off mid-write
    ("model.safetensors.index.json", '["not", "an", "object"]'),
    ("tokenizer_config.json", b"\xff\xfe{}"),               # not UTF-8
])
def test_a_broken_json_file_beside_the_weights_is_one_line(name: str, content: str | bytes, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint's config, shard index or tokenizer config that cannot be read names the file in one
    line (exit 2); never a RecursionError or JSONDecodeError traceback."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from tests.test_adapter_llava import write_released

    folder = tmp_path / "llava"
    folder.mkdir()
    write_released(folder)
    target = folder / name
    target.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = cli(capsys, "run", "--model", "llava-med", "--task", "vqa", "--dataset", "demo", "--limit", "1",
                 "--model-args", f"checkpoint={folder}", "--output", str(tmp_path / "run"))
    assert_usage_error(result, "model 'llava-med'" if name != "tokenizer_config.json" else "tokenizer", name)
