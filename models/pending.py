"""Shared start-up checks for the released-checkpoint adapters whose model code is not built yet.

Each adapter below is registered so ``radbench list models`` shows it and a run without weights
fails with one line naming the argument and the files expected. With the files present it still
stops with a one-line error: the architecture code lands with the model-adapter issues, and radbench
never pretends to evaluate a model it cannot run.
"""

from __future__ import annotations

from typing import Sequence

from radbench.errors import UsageError
from radbench.models.base import Adapter, require_checkpoint


class PendingCheckpointAdapter(Adapter):
    """Validates ``--model-args checkpoint=PATH``, then refuses to run (model code not yet in radbench)."""

    expected_files: Sequence[str] = ()

    @classmethod
    def from_args(cls, **model_args: str) -> Adapter:
        path = require_checkpoint(cls.name, model_args, cls.expected_files)
        raise UsageError(
            f"model {cls.name!r}: found the checkpoint in {path}, but this radbench version does not include "
            f"the {cls.name} architecture yet (tracked in the model-adapter issues)"
        )
