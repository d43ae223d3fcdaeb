"""Data-parallel runs under ``torchrun``: deterministic shards, per-rank logs, one scorer.

torchrun starts one process per replica and sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``. Each rank
takes every ``world_size``-th sample of the dataset order, skips what any earlier attempt already
stored (predictions are keyed by content, so an attempt with another world size resumes cleanly),
and appends to its own part file. One collective call happens, at start-up (a gloo handshake that
checks every rank renders the same requests and agrees on an attempt id); after that, ranks talk
only through files with heartbeats, so a rank that dies gives rank 0 a clear error after a timeout
instead of a hang in a collective. Rank 0 merges the parts, scores once and writes the results.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from radbench.errors import UsageError
from radbench.store import PARTS, atomic_write_json

DEFAULT_TIMEOUT = float(os.environ.get("RADBENCH_RANK_TIMEOUT", "1800"))


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def current_world() -> World:
    """The world torchrun describes in the environment (a single process when it is absent)."""
    try:
        size = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise UsageError(f"RANK/WORLD_SIZE/LOCAL_RANK must be integers ({exc})") from None
    if not 0 <= rank < size:
        raise UsageError(f"RANK={rank} is outside WORLD_SIZE={size}")
    return World(rank, size, local)


def shard(items: list, world: World) -> list:
    """This rank's share: a fixed stride over the dataset order, independent of what is done."""
    return items[world.rank :: world.size]


def handshake(world: World, fingerprint: str, timeout: float = DEFAULT_TIMEOUT) -> str:
    """Check all ranks render identical work, and agree on an attempt id (the only collective call).

    ``fingerprint`` hashes what a rank is about to do (requests, model, settings); a mismatch means
    ranks read different data or arguments, which would merge into a silently wrong run.
    """
    if not world.distributed:
        return uuid.uuid4().hex
    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    dist.init_process_group("gloo", rank=world.rank, world_size=world.size, timeout=timedelta(seconds=timeout))
    try:
        prints: list[str | None] = [None] * world.size
        dist.all_gather_object(prints, fingerprint)
        attempt = [uuid.uuid4().hex if world.is_main else None]
        dist.broadcast_object_list(attempt, src=0)
    finally:
        dist.destroy_process_group()
    if len(set(prints)) != 1:
        differing = [r for r, p in enumerate(prints) if p != prints[0]]
        raise UsageError(f"ranks {differing} prepared different requests from rank 0 (different data or arguments)")
    return str(attempt[0])


class RankFiles:
    """Heartbeats and completion markers of one attempt, under ``OUTPUT/parts/``."""

    def __init__(self, output: Path, world: World, attempt: str) -> None:
        self.dir = output / PARTS
        self.world = world
        self.attempt = attempt
        self.dir.mkdir(parents=True, exist_ok=True)

    def part_path(self) -> Path:
        return self.dir / f"predictions.{self.attempt[:12]}.rank{self.world.rank}.jsonl"

    def _beat(self, rank: int) -> Path:
        return self.dir / f"{self.attempt[:12]}.rank{rank}.alive"

    def _done(self, rank: int) -> Path:
        return self.dir / f"{self.attempt[:12]}.rank{rank}.done"

    def heartbeat(self) -> None:
        self._beat(self.world.rank).touch()

    def mark_done(self, telemetry: dict[str, Any]) -> None:
        """This rank is finished; ``telemetry`` (samples generated, seconds, batching) is for rank 0."""
        atomic_write_json(self._done(self.world.rank), {**telemetry, "rank": self.world.rank})

    def wait_for_all(self, timeout: float = DEFAULT_TIMEOUT, poll: float = 0.2) -> list[dict[str, Any]]:
        """Rank 0 waits for every rank's marker and returns their telemetry, in rank order.

        A rank silent (no heartbeat, no marker) for ``timeout`` seconds is an error, not a hang.
        """
        start = time.monotonic()
        while True:
            missing = [r for r in range(self.world.size) if not self._done(r).exists()]
            if not missing:
                return [json.loads(self._done(r).read_text()) for r in range(self.world.size)]
            now = time.time()
            for rank in missing:
                beat = self._beat(rank)
                last = beat.stat().st_mtime if beat.exists() else None
                silent = now - last if last is not None else time.monotonic() - start
                if silent > timeout:
                    raise UsageError(
                        f"rank {rank} of {self.world.size} stopped responding ({silent:.0f}s without progress); "
                        "its finished predictions are kept: re-run the same command to resume"
                    )
            time.sleep(poll)

    def cleanup(self) -> None:
        for path in self.dir.glob(f"{self.attempt[:12]}.rank*"):
            path.unlink(missing_ok=True)


def gpu_count() -> int:
    """CUDA devices this process sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def ranks_per_node(world: World) -> int:
    """Ranks sharing this node's GPUs (torchrun's ``LOCAL_WORLD_SIZE``; the world size without it)."""
    return int(os.environ.get("LOCAL_WORLD_SIZE", str(world.size)))


def check_gpus(world: World, gpus_per_replica: int) -> list[int]:
    """The GPU indices this replica owns; ranks x K must fit the node's GPUs."""
    available = gpu_count()
    per_node = ranks_per_node(world)
    if per_node * gpus_per_replica > available:
        raise UsageError(
            f"{per_node} ranks x gpus_per_replica={gpus_per_replica} needs {per_node * gpus_per_replica} GPUs "
            f"per node, but this node has {available}"
        )
    first = world.local_rank * gpus_per_replica
    return list(range(first, first + gpus_per_replica))


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """The command ``radbench run --launcher torchrun --nproc N`` re-executes itself as."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "radbench", *argv]
