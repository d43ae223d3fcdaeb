"""RadFM (3D ViT + perceiver + LLaMA-13B) adapter: registered name ``radfm``.

Start-up checks only for now (see :mod:`radbench.models.pending`); the architecture is built in its
model-adapter issue.
"""

from __future__ import annotations

from radbench.models.pending import PendingCheckpointAdapter


class RadFMAdapter(PendingCheckpointAdapter):
    name = "radfm"
    expected_files = ("pytorch_model.bin", "Language_files/tokenizer.model",)
