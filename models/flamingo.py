"""OpenFlamingo and Med-Flamingo adapters: registered names ``openflamingo`` and ``medflamingo``.

Start-up checks only for now (see :mod:`radbench.models.pending`); the perceiver + gated
cross-attention architecture is built in its model-adapter issue.
"""

from __future__ import annotations

from radbench.models.pending import PendingCheckpointAdapter


class OpenFlamingoAdapter(PendingCheckpointAdapter):
    name = "openflamingo"
    expected_files = ("checkpoint.pt",)


class MedFlamingoAdapter(PendingCheckpointAdapter):
    name = "medflamingo"
    expected_files = ("model.pt",)
