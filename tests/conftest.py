"""Shared test set-up: an isolated cache, offline Hugging Face, and the demo rendered once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before anything imports transformers or renders the demo: tests never touch ~/.cache or a hub.
_CACHE = Path(tempfile.mkdtemp(prefix="radbench-test-cache-"))
os.environ["RADBENCH_CACHE"] = str(_CACHE)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

TESTS = Path(__file__).resolve().parent
