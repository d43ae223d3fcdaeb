"""MedVInT-TD (PMC-CLIP + PMC-LLaMA with LoRA) adapter: registered name ``medvint``.

Start-up checks only for now (see :mod:`radbench.models.pending`); the architecture is built in its
model-adapter issue.
"""

from __future__ import annotations

from radbench.models.pending import PendingCheckpointAdapter


class MedVInTAdapter(PendingCheckpointAdapter):
    name = "medvint"
    expected_files = ("pytorch_model.bin",)
