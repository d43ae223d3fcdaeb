"""radbench.hub offline, through huggingface_hub's real cache layout built in a temporary folder:
``<HF_HUB_CACHE>/{models,datasets}--ORG--NAME/{blobs,snapshots/<SHA>,refs/main}``."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from radbench import hub
from radbench.cli import main
from radbench.errors import UsageError
from radbench.store import RESULTS
from tests.support import published_roots as pr

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_repo(cache: Path, repo_id: str, files: dict[str, bytes | Path], repo_type: str = "model",
               commit: str = COMMIT, ref: str = "main") -> Path:
    """A repo snapshot exactly as huggingface_hub stores it: blobs named by hash, snapshot links, a ref."""
    repo = cache / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, content in files.items():
        data = content.read_bytes() if isinstance(content, Path) else content
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(Path("../" * (name.count("/") + 2)) / "blobs" / blob.name)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "hf-cache"
    path.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("RADBENCH_CACHE", str(tmp_path / "radbench-cache"))
    return path


def test_parse_repo_id() -> None:
    assert hub.parse_repo_id("chaoyi-wu/RadFM") == ("chaoyi-wu/RadFM", None)
    assert hub.parse_repo_id("org/name.v2@refs/pr/1") == ("org/name.v2", "refs/pr/1")
    assert hub.parse_repo_id("./org/name") is None and hub.parse_repo_id("name") is None and hub.parse_repo_id("a/b/c") is None


def test_model_repo_from_the_cache_with_provenance(cache: Path) -> None:
    snapshot = cache_repo(cache, "org/tiny", {"config.json": b"{}", "weights/model.bin": b"w" * 10})
    got = hub.resolve("org/tiny", allow_patterns=["*.json", "weights/*"], what="checkpoint=")
    assert got.path == snapshot and got.commit == COMMIT and (got.path / "weights" / "model.bin").read_bytes() == b"w" * 10
    assert got.provenance() == {"repo_id": "org/tiny", "repo_type": "model", "revision": "main", "commit": COMMIT,
                                "archives": []}


def test_revision_by_branch_and_by_commit(cache: Path) -> None:
    other = "f" * 40
    cache_repo(cache, "org/tiny", {"a.txt": b"main"})
    cache_repo(cache, "org/tiny", {"a.txt": b"v1"}, commit=other, ref="v1")
    assert (hub.resolve("org/tiny@v1").path / "a.txt").read_bytes() == b"v1"
    assert hub.resolve(f"org/tiny@{other}").commit == other
    assert hub.resolve("org/tiny").commit == COMMIT


def test_an_existing_local_path_wins(cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache_repo(cache, "org/tiny", {"a.txt": b"hub"})
    (tmp_path / "org" / "tiny").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    got = hub.resolve("org/tiny")
    assert got.path == Path("org/tiny") and got.repo_id is None and got.provenance() == {"path": "org/tiny"}


def test_unknown_repo_offline_is_one_line_naming_repo_and_cache(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(UsageError) as info:
        hub.resolve("org/absent", what="checkpoint=")
    message = str(info.value)
    assert "org/absent" in message and str(cache) in message and "HF_HUB_OFFLINE=1" in message and "\n" not in message
    assert main(["validate", "--task", "vqa", "--dataset", "vqa-rad", "--data-root", "hf:org/absent@v2"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "dataset repo org/absent@v2 is not in the cache" in err


def test_not_a_path_nor_a_repo_id(cache: Path) -> None:
    with pytest.raises(UsageError, match="not a Hugging Face repo id"):
        hub.resolve("no/such/folder", what="--data-root")


def test_files_not_asked_for_are_not_there(cache: Path) -> None:
    cache_repo(cache, "org/tiny", {"a.txt": b"x"})
    with pytest.raises(UsageError, match=r"has no files matching \*\.safetensors"):
        hub.resolve("org/tiny", allow_patterns=["*.safetensors"])


def _split_zip(tmp_path: Path) -> tuple[list[Path], bytes]:
    """A zip split in 64 KiB parts by Info-ZIP (``zip -s``), as RadFM's RadFM.z01..z04 + RadFM.zip."""
    work = tmp_path / "zipwork"
    payload = hashlib.sha256(b"seed").digest() * 8000  # 256 KB, stored: several parts
    (work / "ckpt").mkdir(parents=True)
    (work / "ckpt" / "pytorch_model.bin").write_bytes(payload)
    subprocess.run(["zip", "-q", "-0", "-s", "64k", "-r", "RadFM.zip", "ckpt"], cwd=work, check=True)
    parts = sorted(work.glob("RadFM.z[0-9]*")) + [work / "RadFM.zip"]
    return parts, payload


@pytest.mark.skipif(shutil.which("zip") is None, reason="Info-ZIP's zip makes the split archive")
def test_split_zip_is_assembled_and_unpacked_once_with_its_sha256(cache: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    parts, payload = _split_zip(tmp_path)
    assert len(parts) >= 4
    cache_repo(cache, "chaoyi-wu/RadFM", {p.name: p for p in parts} | {"README.md": b"card"})
    got = hub.resolve("chaoyi-wu/RadFM", allow_patterns=["RadFM.z*"])
    assert (got.path / "ckpt" / "pytorch_model.bin").read_bytes() == payload
    assert not (got.path / "README.md").exists()  # not asked for
    joined = b"".join(p.read_bytes() for p in parts)
    [archive] = got.archives
    assert archive.parts == tuple(p.name for p in parts) and archive.sha256 == hashlib.sha256(joined).hexdigest()
    assert json.loads((got.path / hub.RECORD).read_text())["RadFM.zip"]["sha256"] == archive.sha256
    monkeypatch.setattr(hub, "unpack", lambda *a, **k: pytest.fail("unpacked twice"))
    again = hub.resolve("chaoyi-wu/RadFM", allow_patterns=["RadFM.z*"])
    assert again.path == got.path and again.archives == got.archives


def test_tar_gz_and_zip_in_a_dataset_repo(cache: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "imgs").mkdir(parents=True)
    (src / "imgs" / "a.txt").write_text("A")
    with tarfile.open(tmp_path / "extra.tar.gz", "w:gz") as tf:
        tf.add(src / "imgs", arcname="extra")
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as zf:
        zf.write(src / "imgs" / "a.txt", "imgs/a.txt")
    cache_repo(cache, "org/set", {"extra.tar.gz": tmp_path / "extra.tar.gz", "imgs.zip": tmp_path / "imgs.zip",
                                  "test.json": b"[]"}, repo_type="dataset")
    got = hub.resolve("org/set", repo_type="dataset")
    assert (got.path / "extra" / "a.txt").read_text() == "A" and (got.path / "imgs" / "a.txt").read_text() == "A"
    assert (got.path / "test.json").read_text() == "[]" and {a.name for a in got.archives} == {"extra.tar.gz", "imgs.zip"}


def test_corrupt_archive_is_one_line(cache: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as zf:
        zf.writestr("imgs/a.txt", "A" * 1000)
    data = bytearray((tmp_path / "imgs.zip").read_bytes())
    data[40:60] = b"\0" * 20  # inside the stored member
    cache_repo(cache, "org/bad", {"imgs.zip": bytes(data)}, repo_type="dataset")
    with pytest.raises(UsageError) as info:
        hub.resolve("org/bad", repo_type="dataset", what="--data-root hf:org/bad")
    assert "imgs.zip: corrupt" in str(info.value) and "\n" not in str(info.value)
    cache_repo(cache, "org/trunc", {"x.tar.gz": b"\x1f\x8b\x08\x00garbage"}, repo_type="dataset")
    with pytest.raises(UsageError, match="x.tar.gz: corrupt or unreadable tar archive"):
        hub.resolve("org/trunc", repo_type="dataset")


def test_slake_from_a_hub_dataset_repo_runs_end_to_end(cache: Path, tmp_path: Path) -> None:
    """BoKelvin/SLAKE's layout: the json files at the top, the images in imgs.zip."""
    local = pr.slake(tmp_path / "slake") / "Slake1.0"
    with zipfile.ZipFile(tmp_path / "imgs.zip", "w") as zf:
        for f in sorted((local / "imgs").rglob("*.jpg")):
            zf.write(f, f.relative_to(local).as_posix())
    files: dict[str, bytes | Path] = {"imgs.zip": tmp_path / "imgs.zip", "test.json": local / "test.json",
                                      "train.json": local / "train.json", "validation.json": local / "validate.json",
                                      "KG.zip": b"not asked for"}
    cache_repo(cache, "BoKelvin/SLAKE", files, repo_type="dataset")
    out = tmp_path / "run"
    for data_root in (["--data-root", "hf:BoKelvin/SLAKE"], []):  # explicit, then the dataset's default repo
        shutil.rmtree(out, ignore_errors=True)
        assert main(["run", "--model", "majority", "--task", "vqa", "--dataset", "slake", *data_root,
                     "--output", str(out), "--quiet"]) == 0
        res = json.loads((out / RESULTS).read_text())
        assert res["n_samples"] == 2 and res["failures"]["count"] == 0
        hub_origin = res["dataset"]["hub"]  # the repo and its resolved commit, with the unpacked archive
        assert hub_origin["repo_id"] == "BoKelvin/SLAKE" and hub_origin["commit"] == COMMIT
        assert [a["name"] for a in hub_origin["archives"]] == ["imgs.zip"]


def test_vqa_rad_default_repo_is_the_hub_parquet(cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local = pr.vqa_rad_parquet(tmp_path / "vqa")
    cache_repo(cache, "flaviagiammarino/vqa-rad", {f"data/{p.name}": p for p in (local / "data").iterdir()},
               repo_type="dataset")
    assert main(["validate", "--task", "vqa", "--dataset", "vqa-rad"]) == 0
    out = capsys.readouterr().out
    assert f"format hub-parquet from Hugging Face dataset repo flaviagiammarino/vqa-rad at commit {COMMIT}" in out
