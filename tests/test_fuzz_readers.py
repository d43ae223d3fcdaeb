"""Hypothesis fuzzing of the dataset readers and the ``radbench score`` inputs (issue #9).

Whatever bytes a data file holds, a reader gives samples (a bad row becomes a failed sample naming
its row) or a :class:`~radbench.errors.UsageError` (which the CLI prints as one line, exit 2); never
another exception type, and never a silently dropped row. Readers covered: the user-dataset folder format (JSONL, CSV, JSON list, and
its config), RadFM's CSV and JSON files (through the registered datasets, with ``--data-root``), and
``radbench score``'s JSONL and RadFM-CSV inputs. The good samples must also render to a request and
hash into a manifest, as a run does next.

Bounded and deterministic for CI: ``derandomize=True``, no example database, 50 examples a test.
"""

from __future__ import annotations

import csv
import io
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from radbench import registry
from radbench.errors import UsageError
from radbench.rescore import score_file
from radbench.runner import load_task, manifest_hash
from radbench.tasks.base import DataOptions, failed_row
from radbench.tasks.datasets.user import FIELDS, KEYS, UserDataset
from radbench.types import Sample
from tests.support.data_roots import build_radfm_root, image_root_arg

FUZZ = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# Strings that mean something to some reader: answers, list literals, paths, separators, bad text, and
# lone surrogates (a JSON escape such as "\\ud800" or a Python literal gives them; no UTF-8 file can).
SPECIAL = ["", " ", "yes", "no", "YES", "0", "1", "1.0", "2", "nan", "[]", "['1', '2']", "[1", "(1,)", "['a']",
           "[['a']]", "a|b|c", "a;b", "•", "A:left", "Q:why", "x.npy", "c1.npy", "scan/", "x.nii.gz", "x.png",
           "../up.png", "/etc/hostname", "pkg:nibabel/x", "pkg:a.b/x.npy", "pkg:/x", "{question}", "{0}", "{",
           "\x00", "a\nb", '"', ",", "é", "☃" * 3, "\ud800", "x\udfff", "\udc00"]
text = st.one_of(st.sampled_from(SPECIAL), st.text(max_size=12))
scalar = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=True, allow_infinity=True), text)
json_value = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                          max_leaves=6)
cell = st.one_of(text, text, text, json_value)


def _records(keys: list[str]) -> st.SearchStrategy[list[Any]]:
    """Lists of objects: mostly with every key, some with keys missing or extra, now and then a non-object."""
    full = st.fixed_dictionaries({k: cell for k in keys}, optional={"extra": cell})
    partial = st.dictionaries(st.sampled_from(keys + ["extra"]), cell, max_size=len(keys) + 1)
    return st.lists(st.one_of(full, full, full, partial, json_value), max_size=5)


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8", "surrogatepass")


def _dumps(value: Any) -> str:
    return json.dumps(value, allow_nan=True)


@st.composite
def data_file(draw: st.DrawFn, keys: list[str], fmt: str) -> bytes:
    """The bytes of a ``fmt`` (csv, json, jsonl) file over ``keys``, well-formed or not, maybe mutated."""
    if fmt == "csv":
        header = keys
        if draw(st.integers(0, 3)) == 0:
            header = draw(st.lists(st.sampled_from(keys + ["extra"]), unique=True, max_size=len(keys) + 1))
        width = st.sampled_from([len(header)] * 4 + [max(len(header) - 1, 0), len(header) + 1])
        rows = draw(st.lists(width.flatmap(lambda n: st.lists(text, min_size=n, max_size=n)), max_size=5))
        raw = _csv_bytes(header, rows)
    else:
        records = draw(_records(keys))
        body = "".join(_dumps(r) + "\n" for r in records) if fmt == "jsonl" else _dumps(records)
        raw = body.encode("utf-8", "surrogatepass")
    how = draw(st.sampled_from(["as-is"] * 4 + ["insert", "truncate", "random"]))
    if how == "insert":
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.sampled_from([b"\xff", b"\xe9", b"\n", b"{", b'"', b",", b"\x00", b"\r"])) + raw[at:]
    elif how == "truncate":
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif how == "random":
        raw = draw(st.binary(max_size=120))
    return raw


def _use(samples: list[Sample], task: str) -> None:
    """What a run does with freshly read samples: hash the manifest, render each good one."""
    assert all(isinstance(s, Sample) for s in samples)
    manifest_hash(samples)
    renderer = load_task(task)
    for sample in samples:
        if failed_row(sample) is None:
            renderer.render(sample).prompt_hash()
        assert all(isinstance(r, str) for r in sample.references)


# ------------------------------------------------------------------------------------------------
# The user-dataset folder format

USER_COLUMNS = {"id": "id", "question": "q", "answer": "a", "image": "img", "options": "opts", "context": "ctx"}


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "json"])
@FUZZ
@given(data=st.data())
def test_user_data_file_gives_samples_or_a_usage_error(fmt: str, data: st.DataObject) -> None:
    raw = data.draw(data_file(list(USER_COLUMNS.values()), fmt), label="file")
    strict = data.draw(st.booleans(), label="strict")
    with tempfile.TemporaryDirectory(prefix="radbench-fuzz-") as name:
        folder = Path(name)
        (folder / f"test.{fmt}").write_bytes(raw)
        config = {"name": "fz", "task": "vqa", "data": f"test.{fmt}", "columns": USER_COLUMNS}
        (folder / "radbench.json").write_text(json.dumps(config))
        try:
            samples = UserDataset(str(folder)).load("vqa", "test", None, DataOptions(strict=strict))
        except UsageError as exc:
            assert str(exc).strip()
            return
        _use(samples, "vqa")
        assert not strict or all(failed_row(s) is None for s in samples)
        if fmt == "jsonl":  # every non-blank line is a sample, good or failed
            lines = [ln for ln in raw.decode("utf-8-sig", "surrogateescape").splitlines() if ln.strip()]
            assert len(samples) == len(lines)
        elif fmt == "json":
            assert len(samples) == len(json.loads(raw.decode("utf-8-sig", "surrogateescape")))


CONFIG_WORDS = ["vqa", "report", "diagnosis", "test.jsonl", "lung", "40,400", "2d", "3d", "auto", "open", "closed",
                "{question}", "{question.upper}", "{question[0]}", "{q}", "{a}", "{0}", "{}", "Q: {q}!r", "{q!x}",
                "{q:>{q}}", "{id}", "pics", "", "\ud800"]
config_value = st.one_of(json_value, st.sampled_from(CONFIG_WORDS), st.sampled_from([["accuracy"], ["bleu9"]]))
column_name = st.one_of(st.sampled_from(["q", "a", "img", "id", "nope", "\ud800"]), text)
columns = st.one_of(
    st.fixed_dictionaries({"answer": column_name}, optional={f: column_name for f in sorted(FIELDS - {"answer"})}),
    st.dictionaries(st.one_of(st.sampled_from(sorted(FIELDS)), text), column_name, max_size=4))
config = st.fixed_dictionaries(
    {"task": st.sampled_from(["vqa", "report", "rationale", "diagnosis"]),
     "data": st.sampled_from(["test.jsonl"] * 3 + ["missing.jsonl", "test.jsonl/", ""]), "columns": columns},
    optional={k: config_value for k in sorted(KEYS - {"task", "data", "columns", "splits"})})


@FUZZ
@given(config=config, as_yaml=st.booleans())
def test_user_config_gives_a_dataset_or_a_usage_error(config: dict[str, Any], as_yaml: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="radbench-fuzz-") as name:
        folder = Path(name)
        (folder / "test.jsonl").write_text(json.dumps({"q": "Is it?", "a": "yes", "img": "x.png", "id": 7}) + "\n")
        if as_yaml:
            (folder / "radbench.yaml").write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8",
                                                  errors="surrogatepass")
        else:
            (folder / "radbench.json").write_text(json.dumps(config), encoding="utf-8")
        try:
            dataset = UserDataset(str(folder))
            samples = dataset.load(dataset.tasks[0], "test", None, DataOptions())
            registry.get("tasks", dataset.tasks[0])
        except UsageError:
            return
        _use(samples, dataset.tasks[0])


# ------------------------------------------------------------------------------------------------
# RadFM's files, read by the registered datasets from a --data-root

ARTICLE_KEYS = ["pre", "pat", "npy_path", "finding", "impression", "title", "articles", "radiographic_features"]
RADFM_TARGETS = {  # id: (dataset, task, file under data_csv/, format, keys)
    "vqa-rad": ("vqa-rad", "vqa", "VQA_RAD_test.csv", "csv", ["img_root_dir", "Figure_path", "Question", "Answer"]),
    "casereport": ("pmc-casereport", "vqa", "filtered_case_report_test.csv", "csv",
                   ["PMC_id", "img_ref", "context", "question", "answer"]),
    "radio-vqa": ("radbench", "vqa", "radiology_vqa_test.csv", "csv", ["image_path", "question", "answer"]),
    "mimic": ("mimic-cxr", "report", "mimic_caption_test.csv", "csv", ["image_path", "label"]),
    "balance": ("chestxray", "diagnosis", "chestxray_balance_test.csv", "csv", ["image_path", "disease", "label"]),
    "modality": ("radio-modality", "diagnosis", "radio_modality_test.csv", "csv", ["image_path", "answer"]),
    "article-report": ("radbench", "report", "radiology_article_npy_test.json", "json", ARTICLE_KEYS),
    "article-rationale": ("radbench", "rationale", "radiology_article_npy_test.json", "json", ARTICLE_KEYS),
    "article-yes-no": ("radbench", "diagnosis", "radiology_article_npy_test.json", "json", ARTICLE_KEYS),
    "modality-set": ("radio-modality", "diagnosis", "modality_set.json", "aux", ["modality"]),
    "article-titles": ("radbench", "diagnosis", "articles_resave.json", "aux", ["Pneumonia", "text"]),
}


@pytest.fixture(scope="module")
def radfm_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_radfm_root(tmp_path_factory.mktemp("radfm") / "data")


@pytest.mark.parametrize("target", sorted(RADFM_TARGETS))
@FUZZ
@given(data=st.data())
def test_radfm_file_gives_samples_or_a_usage_error(target: str, radfm_root: Path, data: st.DataObject) -> None:
    dataset_name, task, name, fmt, keys = RADFM_TARGETS[target]
    if fmt == "aux":
        value = data.draw(st.one_of(json_value, st.dictionaries(st.sampled_from(keys), json_value, max_size=3)))
        raw = _dumps(value).encode("utf-8", "surrogatepass")
    else:
        raw = data.draw(data_file(keys, fmt), label="file")
    path = radfm_root / "data_csv" / name
    original = path.read_bytes()
    path.write_bytes(raw)
    options = DataOptions(str(radfm_root), DataOptions.parse_image_roots([image_root_arg(radfm_root)]))
    try:
        samples = registry.get("datasets", dataset_name)().load(task, "test", str(radfm_root), options)
    except UsageError as exc:
        assert str(exc).strip()
        return
    finally:
        path.write_bytes(original)
    _use(samples, task)


# ------------------------------------------------------------------------------------------------
# radbench score: JSONL and RadFM's output CSV

SCORE_KEYS = ["id", "prediction", "reference", "dataset", "study_id", "patient_id", "options", "question", "metadata"]
RADFM_CELL = st.one_of(text, text.map(lambda t: repr([t])), st.lists(text, max_size=2).map(repr))


@st.composite
def score_file_bytes(draw: st.DrawFn, fmt: str) -> bytes:
    if fmt == "csv":
        header = ["Question", "Ground Truth", "Pred", "belong_to"]
        if draw(st.integers(0, 3)) == 0:
            header = draw(st.lists(st.sampled_from(header + ["extra"]), unique=True, max_size=5))
        width = st.sampled_from([len(header)] * 4 + [max(len(header) - 1, 0), len(header) + 1])
        rows = draw(st.lists(width.flatmap(lambda n: st.lists(RADFM_CELL, min_size=n, max_size=n)), max_size=4))
        return _csv_bytes(header, rows)
    plain = st.fixed_dictionaries(
        {"id": st.one_of(st.integers(0, 50), text), "prediction": st.one_of(text, st.none()),
         "reference": st.one_of(text, st.lists(text, min_size=1, max_size=2))},
        optional={k: text for k in ("dataset", "study_id", "patient_id", "question")},
    )
    odd = st.fixed_dictionaries(
        {"id": json_value, "prediction": json_value, "reference": json_value},
        optional={k: json_value for k in SCORE_KEYS[3:]},
    )
    records = draw(st.lists(st.one_of(plain, plain, odd, json_value), min_size=1, max_size=4))
    raw = "".join(_dumps(r) + "\n" for r in records)
    return draw(st.sampled_from([raw] * 6 + [raw.rstrip("\n"), raw[: len(raw) // 2]])).encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@FUZZ
@given(data=st.data())
def test_score_inputs_give_results_or_a_usage_error(fmt: str, data: st.DataObject) -> None:
    raw = data.draw(score_file_bytes(fmt), label="file")
    with tempfile.TemporaryDirectory(prefix="radbench-fuzz-") as name:
        path = Path(name) / f"preds.{fmt}"
        path.write_bytes(raw)
        try:
            res = score_file(path, "vqa", "accuracy,bleu1,rougeL", Path(name) / "out", 0)
        except UsageError as exc:
            assert str(exc).strip()
            return
        assert res["n_samples"] >= 1
        for metric in res["metrics"].values():
            assert metric["value"] is None or 0.0 <= metric["value"] <= 1.0


def test_fuzz_fixture_root_is_untouched(radfm_root: Path) -> None:
    """The RadFM fuzz restores every file it overwrote (so its targets stay independent)."""
    fresh = build_radfm_root(radfm_root.parent / "fresh")
    for path in (radfm_root / "data_csv").iterdir():
        assert path.read_bytes() == (fresh / "data_csv" / path.name).read_bytes(), path.name
    shutil.rmtree(fresh)


# ------------------------------------------------------------------------------------------------
# The publishers' own layouts (tasks/datasets/{vqa_rad_osf,slake_json,pmc_vqa_csv,mimic_cxr_jpg,r2gen,hub_parquet}.py)

OSF_KEYS = ["qid", "phrase_type", "image_name", "question", "answer", "answer_type"]
SLAKE_KEYS = ["qid", "img_name", "question", "answer", "q_lang", "answer_type"]
PMC_KEYS = ["Figure_path", "Question", "Answer", "Choice A", "Choice B", "Choice C", "Choice D", "Answer_label"]
R2GEN_KEYS = ["id", "report", "image_path", "split", "study_id", "subject_id"]
# id: (dataset, task, builder name, file under the root, how the fuzzed file is made)
PUBLISHED = {
    "vqa-rad-osf": ("vqa-rad", "vqa", "vqa_rad_osf", "VQA_RAD Dataset Public.json", "json"),
    "slake": ("slake", "vqa", "slake", "Slake1.0/test.json", "json"),
    "pmc-vqa": ("pmc-vqa", "vqa", "pmc_vqa", "test_clean.csv", "csv"),
    "mimic-split": ("mimic-cxr", "report", "mimic_cxr_jpg", "mimic-cxr-2.0.0-split.csv.gz", "csv.gz"),
    "mimic-metadata": ("mimic-cxr", "report", "mimic_cxr_jpg", "mimic-cxr-2.0.0-metadata.csv.gz", "csv.gz"),
    "mimic-report": ("mimic-cxr", "report", "mimic_cxr_jpg", "mimic-cxr-reports/files/p10/p10000032/s50414267.txt", "txt"),
    "r2gen": ("iu-xray", "report", "r2gen", "iu_xray/annotation.json", "r2gen"),
    "hub-parquet": ("vqa-rad", "vqa", "vqa_rad_parquet", "data/test-00000-of-00001-0123456789abcdef.parquet", "parquet"),
}
PUBLISHED_KEYS = {"vqa-rad-osf": OSF_KEYS, "slake": SLAKE_KEYS, "pmc-vqa": PMC_KEYS, "r2gen": R2GEN_KEYS,
                  "mimic-split": ["dicom_id", "study_id", "subject_id", "split"],
                  "mimic-metadata": ["dicom_id", "subject_id", "study_id", "ViewPosition"]}
NESTED = "[" * 100_000 + "]" * 100_000


@pytest.fixture(scope="module")
def published_roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from tests.support import published_roots as pr

    return {target: getattr(pr, builder)(tmp_path_factory.mktemp(target))
            for target, (_, _, builder, _, _) in PUBLISHED.items()}


@st.composite
def published_file(draw: st.DrawFn, target: str, original: bytes) -> bytes:
    """The bytes of a publisher's file: well-formed over its keys, mutated, cut, random or deeply nested."""
    import gzip

    kind = PUBLISHED[target][4]
    keys = PUBLISHED_KEYS.get(target, [])
    how = draw(st.sampled_from(["generated"] * 4 + ["truncate", "random", "nested", "insert"]))
    if how == "nested":
        raw = NESTED.encode()
    elif how == "random":
        raw = draw(st.binary(max_size=200))
    elif how == "truncate":
        raw = original[: draw(st.integers(0, len(original)))]
    elif how == "insert":
        at = draw(st.integers(0, len(original)))
        raw = original[:at] + draw(st.sampled_from([b"\xff", b"\x00", b"{", b"[", b'"', b",", b"\n"])) + original[at:]
    elif kind == "json":
        raw = _dumps(draw(_records(keys))).encode("utf-8", "surrogatepass")
    elif kind == "r2gen":
        splits = st.dictionaries(st.sampled_from(["test", "train", "val", "other"]), _records(keys), max_size=3)
        raw = _dumps(draw(st.one_of(splits, json_value))).encode("utf-8", "surrogatepass")
    elif kind in ("csv", "csv.gz"):
        raw = draw(data_file(keys, "csv"))
        if kind == "csv.gz" and draw(st.booleans()):
            raw = gzip.compress(raw)
    elif kind == "txt":
        raw = draw(st.sampled_from([b"", b"FINDINGS:\n", b"IMPRESSION: ok.\n", b"\xff\xfe", b"FINDINGS: \x00 x\n"]))
        raw += draw(st.binary(max_size=60))
    else:  # parquet: the real file cut or corrupted
        raw = original[: draw(st.integers(0, len(original)))] + draw(st.binary(max_size=40))
    return raw


@pytest.mark.parametrize("target", sorted(PUBLISHED))
@FUZZ
@given(data=st.data())
def test_published_file_gives_samples_or_a_usage_error(target: str, published_roots: dict[str, Path],
                                                       data: st.DataObject) -> None:
    from radbench.tasks.base import load_split

    dataset, task, _, name, _ = PUBLISHED[target]
    root = published_roots[target]
    path = root / name
    original = path.read_bytes()
    path.write_bytes(data.draw(published_file(target, original), label="file"))
    try:
        samples = load_split(registry.get("datasets", dataset)(), task, "test", DataOptions(str(root)))
    except UsageError as exc:
        assert str(exc).strip() and "\0" not in str(exc)
        return
    finally:
        path.write_bytes(original)
    _use(samples, task)
