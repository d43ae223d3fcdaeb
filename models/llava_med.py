"""LLaVA-Med v1.5 (Mistral-7B + CLIP ViT-L/14-336) adapter: registered name ``llava-med``.

Start-up checks only for now (see :mod:`radbench.models.pending`); the architecture is built in its
model-adapter issue.
"""

from __future__ import annotations

from radbench.models.pending import PendingCheckpointAdapter


class LlavaMedAdapter(PendingCheckpointAdapter):
    name = "llava-med"
    expected_files = ("model.safetensors.index.json", "tokenizer.model",)
