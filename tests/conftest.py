"""Shared test set-up: an isolated cache, offline Hugging Face, and what several modules need built once.

Session-scoped fixtures hold what is costly and read-only: the demo baseline runs many modules compare,
rank or corrupt (a test copies a run before changing it) and the HPO index.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

# Set before anything imports transformers or renders the demo: tests never touch ~/.cache or a hub.
_CACHE = Path(tempfile.mkdtemp(prefix="radbench-test-cache-"))
os.environ["RADBENCH_CACHE"] = str(_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny models are dominated by per-op overhead: one intra-op thread is ~2x faster on a busy 2-core box."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def refuse_download(*args: object, **kwargs: object) -> None:
    """Stands in for every download entry point: an offline harness must never call one."""
    raise AssertionError("tried to download")


@pytest.fixture(scope="module")
def hpo_index() -> Iterator[Path]:
    """The default UMLS backend's HPO index (built once per session, then found in the session
    cache), with nltk's downloader made to fail while a module uses it."""
    import nltk

    from radbench.metrics.umls import hpo

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(nltk, "download", refuse_download)
        yield hpo.ensure_hpo_index()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Path]:
    """``demo_run(model, task)``: the run directory of a baseline on a demo task, run once per session.

    The directories are shared by every module that asks: treat them as read-only (copy one with
    ``tests.support.runs.copy_run_with`` or ``shutil.copytree`` before editing it).
    """
    from radbench.runner import RunConfig, run

    root = tmp_path_factory.mktemp("demo-baselines")
    done: dict[tuple[str, str], Path] = {}

    def get(model: str, task: str) -> Path:
        if (model, task) not in done:
            out = root / f"{model}-{task}"
            run(RunConfig(model=model, task=task, dataset="demo", output=out, quiet=True))
            done[model, task] = out
        return done[model, task]

    return get
