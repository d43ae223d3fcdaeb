"""The template of the adapters that run released weights with torch: :class:`CheckpointAdapter`.

Every such adapter is built the same way, so the steps live here once: the ``--model-args`` are
parsed into the adapter's typed :attr:`~CheckpointAdapter.Args`, :func:`resolve` turns them into a
:class:`Build` (dtype, build device, split GPUs, batch size, seed, preset), the adapter builds its
model (:meth:`~CheckpointAdapter.build_tiny` or :meth:`~CheckpointAdapter.load_released`), and the
template spreads it over the split GPUs. An adapter file then holds its model, its checkpoint
conversion and its prompt format.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Self, Sequence

import torch

from radbench.errors import UsageError
from radbench.models import placement
from radbench.models.args import RADBENCH, CheckpointArgs
from radbench.models.base import Adapter
from radbench.models.hub_args import resolve_hub_paths
from radbench.models.loading import cached_file_fingerprint, stable_fingerprint
from radbench.models.tiny import TINY_SEED, tiny_fingerprint

TINY_RANDOM = "tiny-random"
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
DTYPE_NAMES: dict[torch.dtype, str] = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def parse_dtype(model: str, text: str | None, default: str = "fp32") -> torch.dtype:
    """``fp32|bf16|fp16`` (or the long names) -> torch dtype."""
    key = (text or default).strip().lower()
    if key not in DTYPES:
        raise UsageError(f"model {model!r}: dtype={text!r} is not one of fp32, bf16, fp16")
    return DTYPES[key]


@dataclass(frozen=True)
class Build:
    """What a checkpoint adapter is built with, resolved from its args in one place (:func:`resolve`)."""

    dtype: torch.dtype
    device: torch.device  # where the model is built; the CPU when it is then split over ``devices``
    devices: list[torch.device] | None  # the GPUs one replica is split over, or None
    batch_size: int
    seed: int = TINY_SEED  # the tiny-random init's seed; real weights are not random
    check_memory: bool = True  # False: a split skips the free-memory check (devices that are not GPUs)


def resolve(model: str, args: CheckpointArgs) -> Build:
    """dtype, devices, batch size, seed and preset of ``args``, each checked once for every adapter."""
    if args.preset and args.preset != TINY_RANDOM:
        raise UsageError(f"model {model!r}: preset={args.preset!r} is unknown (the only preset is {TINY_RANDOM})")
    if args.seed is not None and not args.preset:
        raise UsageError(f"model {model!r}: seed= only applies to preset={TINY_RANDOM} (real weights are not random)")
    dtype = parse_dtype(model, args.dtype)
    device, devices = placement.parse_devices(model, args.placement())
    seed = TINY_SEED if args.seed is None else args.seed
    return Build(dtype=dtype, device=device, devices=devices, batch_size=args.batch_size, seed=seed)


class CheckpointAdapter(Adapter):
    """Base of the adapters that run released weights with torch.

    Each keeps the fingerprint of its weights, its dtype and device, where the weights came from
    (``source``) and its preprocessing (``spec``); :meth:`decoding_facts` adds what differs per family.
    A subclass sets :attr:`Args` and implements :meth:`build_tiny`, :meth:`load_released`,
    :meth:`split_points`, :meth:`decoding_facts` and ``generate``.
    """

    Args: ClassVar[type[CheckpointArgs]] = CheckpointArgs
    _fingerprint: str
    dtype: torch.dtype
    device: torch.device
    source: dict[str, Any]
    spec: Any
    supports_device_map = True
    # Greedy or beam decoding (radbench.models.decoding): max_new_tokens, num_beams, length_penalty and
    # early_stopping apply; do_sample, temperature and num_return_sequences only at their greedy values.
    gen_kwargs_honoured: frozenset[str] = frozenset(
        {"max_new_tokens", "num_beams", "length_penalty", "early_stopping", "do_sample", "temperature",
         "num_return_sequences"})
    # Where :meth:`spread` put the model (``None``: all of it on ``device``); not in the
    # fingerprint, since splitting layers across GPUs does not change the arithmetic.
    placement: dict[str, Any] | None = None
    # ``protocol=`` (:class:`CheckpointArgs`): whose stop rule, decoding and answer selection
    # ``generate`` follows; set by :meth:`from_args` through :meth:`use_protocol`.
    protocol: str = RADBENCH
    # The Hub repos the path-or-repo keys named (key -> repo id, revision, resolved commit): results record them.
    hub: dict[str, dict[str, Any]] = {}

    def __init__(self, model: torch.nn.Module, tokenizer: Any, build: Build, fingerprint: str,
                 source: dict[str, Any], spec: Any) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.device = build.device
        self.dtype = build.dtype
        self.max_batch_size = build.batch_size
        self._fingerprint = fingerprint
        self.source = source
        self.spec = spec

    @classmethod
    def from_args(cls, **model_args: str) -> Self:
        args = cls.Args.parse(cls.name, model_args)
        build = resolve(cls.name, args)
        origins: dict[str, dict[str, Any]] = {}
        if not args.preset:  # repo ids (the released defaults too) become local snapshot folders
            args, origins = resolve_hub_paths(cls.name, args)
        adapter = cls.build_tiny(args, build) if args.preset else cls.load_released(args, build)
        adapter.use_protocol(args.protocol)
        adapter.hub = origins
        return adapter if adapter.placement else adapter.spread(build.devices, build.check_memory)

    def use_protocol(self, protocol: str) -> None:
        """Follow ``protocol``; any protocol but radbench's enters the fingerprint.

        Predictions are keyed by fingerprint: a run under the authors' protocol must not resume
        from (or be mistaken for) predictions made under radbench's, and radbench-protocol
        fingerprints stay what they were.
        """
        self.protocol = protocol
        if protocol != RADBENCH:
            self._fingerprint = stable_fingerprint(self.name, self._fingerprint, {"protocol": protocol})

    @classmethod
    def tiny_random(cls, **model_args: Any) -> Self:
        """``preset=tiny-random`` from Python values (``tiny_random(seed=3, mode="open")``): tests, benchmarks."""
        return cls.from_args(preset=TINY_RANDOM, **{key: str(value) for key, value in model_args.items()})

    @classmethod
    def build_tiny(cls, args: Any, build: Build) -> Self:
        """The architecture at toy sizes with a seeded random init (``preset=tiny-random``)."""
        raise NotImplementedError

    @classmethod
    def load_released(cls, args: Any, build: Build) -> Self:
        """The released weights that ``args`` name, checked key by key."""
        raise NotImplementedError

    @classmethod
    def tiny_identity(cls, config: Mapping[str, Any], build: Build, spec: Any, **facts: Any) -> str:
        """The fingerprint of a tiny-random model: its config, the facts that change outputs, the seed."""
        return tiny_fingerprint(cls.name, {**config, **facts, "dtype": DTYPE_NAMES[build.dtype],
                                           "preprocess": spec.fingerprint()}, build.seed)

    @classmethod
    def weights_identity(cls, files: Sequence[Path], args: CheckpointArgs, build: Build, spec: Any,
                         **facts: Any) -> str:
        """The fingerprint of released weights: their files, plus the load options that change outputs.

        Predictions are keyed by fingerprint, so an fp16 run must not resume from fp32 predictions.
        """
        weights_id = cached_file_fingerprint(files, full=args.full_fingerprint)
        return stable_fingerprint(cls.name, weights_id, {"dtype": DTYPE_NAMES[build.dtype], **facts,
                                                          "preprocess": spec.fingerprint()})

    def fingerprint(self) -> str:
        return self._fingerprint

    def decoding_facts(self) -> dict[str, Any]:
        """What ``describe()`` records about decoding (EOS, default length, prompt format)."""
        raise NotImplementedError

    def split_points(self) -> tuple[torch.nn.Module, str, torch.nn.Module]:
        """``(model, dotted path of the LM's decoder-layer list, the transformers LM)`` for :meth:`spread`."""
        raise NotImplementedError

    def spread(self, devices: Sequence[torch.device] | None, check_memory: bool = True) -> Self:
        """Split the loaded model's decoder layers over ``devices`` (from :func:`placement.parse_placement`); ``None``: no-op.

        ``check_memory=False`` skips the free-memory check (for devices that are not GPUs).
        """
        if not devices:
            return self
        model, layers_path, _ = self.split_points()
        return self.dispatch(placement.plan_spread(model, layers_path, devices, name=self.name,
                                                   free_bytes=placement.free_gpu_bytes if check_memory else None))

    def dispatch(self, plan: placement.SpreadPlan) -> Self:
        """Move the model as ``plan`` says (:func:`placement.dispatch`); inputs then start on its first device."""
        model, _, lm = self.split_points()
        self.placement = placement.dispatch(model, plan, sorted(getattr(lm, "_skip_keys_device_placement", None) or ()))
        self.device = plan.devices[0]
        return self

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "protocol": self.protocol,
            "dtype": DTYPE_NAMES[self.dtype],
            "device": str(self.device),
            **({"placement": self.placement} if self.placement else {}),
            "source": self.source,
            **({"hub": self.hub} if self.hub else {}),
            **self.decoding_facts(),
            "preprocessing": self.spec.describe(),
        }
