"""Checkpoints by Hub repo id, offline, through huggingface_hub's real cache layout (tests/test_hub.py's
``cache_repo``): tiny checkpoints in the released layouts, run end to end with ``checkpoint=ORG/NAME``
and with each adapter's default repo, and the bad inputs as one line each."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytest.importorskip("torch")

from radbench.cli import main  # noqa: E402
from radbench.models import radfm  # noqa: E402
from radbench.models.llava_med import LlavaMedAdapter  # noqa: E402
from radbench.store import RESULTS  # noqa: E402
from tests.test_adapter_llava import write_released  # noqa: E402
from tests.test_adapter_radfm import _write_released_layout  # noqa: E402
from tests.test_hub import COMMIT, cache, cache_repo  # noqa: E402,F401  (cache: the offline Hub cache fixture)

LLAVA = "microsoft/llava-med-v1.5-mistral-7b"


@pytest.fixture(scope="module")
def llava_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("llava-released")
    write_released(folder)
    (folder / "README.md").write_text("not a file the adapter reads")
    return folder


def run_cli(out: Path, *extra: str, model: str = "llava-med") -> int:
    return main(["run", "--model", model, "--task", "vqa", "--dataset", "demo", "--limit", "3",
                 "--output", str(out), "--quiet", *extra])


def test_llava_med_by_repo_id_and_by_default_repo(cache: Path, llava_folder: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    files = {p.name: p for p in llava_folder.iterdir()}
    snapshot = cache_repo(cache, "org/tiny-llava", files)
    cache_repo(cache, LLAVA, files)
    assert run_cli(tmp_path / "by-id", "--model-args", "checkpoint=org/tiny-llava") == 0
    assert run_cli(tmp_path / "default") == 0  # no --model-args: the released repo, from the cache
    assert run_cli(tmp_path / "local", "--model-args", f"checkpoint={llava_folder}") == 0
    by_id, default, local = (json.loads((tmp_path / d / RESULTS).read_text()) for d in ("by-id", "default", "local"))
    assert by_id["model"]["hub"] == {"checkpoint": {"repo_id": "org/tiny-llava", "repo_type": "model",
                                                    "revision": "main", "commit": COMMIT, "archives": []}}
    assert default["model"]["hub"]["checkpoint"]["repo_id"] == LLAVA
    assert "hub" not in local["model"]  # a local path records no repo
    assert by_id["model"]["source"]["checkpoint"] == str(snapshot)
    # the same bytes, wherever they came from: one fingerprint, one set of answers
    assert by_id["model"]["fingerprint"] == default["model"]["fingerprint"] == local["model"]["fingerprint"]
    preds = [sorted(json.loads(line)["prediction"] for line in (tmp_path / d / "predictions.jsonl").open())
             for d in ("by-id", "default", "local")]
    assert preds[0] == preds[1] == preds[2]


def test_revision_and_a_local_path_that_shadows_a_repo(cache: Path, llava_folder: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    other = "a" * 40
    files = {p.name: p for p in llava_folder.iterdir()}
    cache_repo(cache, "org/tiny-llava", files, commit=other, ref="v1")
    loaded = LlavaMedAdapter.from_args(checkpoint="org/tiny-llava@v1", device="cpu")
    assert loaded.hub["checkpoint"]["commit"] == other and loaded.hub["checkpoint"]["revision"] == "v1"
    monkeypatch.chdir(tmp_path)
    shutil.copytree(llava_folder, tmp_path / "org" / "tiny-llava")  # ./org/tiny-llava exists: it wins
    assert LlavaMedAdapter.from_args(checkpoint="org/tiny-llava", device="cpu").hub == {}


def _split_zip(src: Path, workdir: Path) -> list[Path]:
    """``RadFM.z01 ... RadFM.zip`` made by Info-ZIP (``zip -s``), holding ``RadFM/pytorch_model.bin`` etc."""
    staging = workdir / "zip-staging"
    shutil.copytree(src, staging / "RadFM")
    subprocess.run(["zip", "-q", "-r", "-0", "-s", "64k", str(workdir / "RadFM.zip"), "RadFM"], cwd=staging, check=True)
    return sorted(workdir.glob("RadFM.z*"))


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP's zip makes the split archive")
def test_radfm_default_repo_split_zip_end_to_end(cache: Path, tmp_path: Path) -> None:
    tiny = radfm.RadFMAdapter.tiny_random()
    released = tmp_path / "released"
    released.mkdir()
    _write_released_layout(tiny, released)
    parts = _split_zip(released, tmp_path)
    assert len(parts) > 2  # RadFM.z01, ..., RadFM.zip
    cache_repo(cache, "chaoyi-wu/RadFM", {p.name: p for p in parts})
    assert run_cli(tmp_path / "run", model="radfm") == 0
    res = json.loads((tmp_path / "run" / RESULTS).read_text())
    origin = res["model"]["hub"]["checkpoint"]
    assert origin["repo_id"] == "chaoyi-wu/RadFM" and origin["commit"] == COMMIT
    (archive,) = origin["archives"]
    assert archive["name"] == "RadFM.zip" and archive["parts"] == [p.name for p in parts]
    assert len(archive["sha256"]) == 64
    # unpacked once: the weights found in the archive's sub-folder, Language_files beside them
    assert res["model"]["source"]["checkpoint"].endswith("RadFM/pytorch_model.bin")
    local = radfm.RadFMAdapter.from_args(checkpoint=str(released))
    assert res["model"]["fingerprint"] == local.fingerprint()
    assert run_cli(tmp_path / "run", model="radfm") == 0  # resume: the cached extraction is reused


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and err.startswith("radbench: error:"), err
    return err


def test_bad_hub_checkpoints_are_one_line(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(tmp_path / "a", "--model-args", "checkpoint=org/absent") == 2
    err = one_line_error(capsys)
    assert "org/absent is not in the cache" in err and str(cache) in err and "HF_HUB_OFFLINE=1" in err
    assert not (tmp_path / "a").exists()  # nothing written

    cache_repo(cache, "org/no-weights", {"README.md": b"weights elsewhere", "config.json": b"{}"})
    assert run_cli(tmp_path / "b", "--model-args", "checkpoint=org/no-weights", model="radfm") == 2
    err = one_line_error(capsys)
    assert "org/no-weights" in err and "pytorch_model.bin" in err

    cache_repo(cache, "chaoyi-wu/RadFM", {"RadFM.zip": b"PK\x03\x04 this is not a zip archive"})
    assert run_cli(tmp_path / "c", model="radfm") == 2
    err = one_line_error(capsys)
    assert "RadFM.zip" in err and "corrupt" in err
