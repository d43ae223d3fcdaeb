"""Building a model and filling it from a released checkpoint, safely and with a readable key report.

Why not ``from_pretrained``: the released checkpoints (RadFM, Flamingo, MedVInT, LLaVA-Med) are
raw state dicts whose key layout is the authors' own; an adapter builds the architecture from a
config and fills it with :func:`load_checked`, which reports wrong keys by name (a 500-line dump
helps nobody) and drops only the stale keys each adapter documents. Loading never unpickles code:
:func:`load_state_dict` reads safetensors, or ``torch.load`` with ``weights_only=True`` (and
``mmap`` so a 52 GB file is not read into RAM at once).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from radbench import safe_io
from radbench.errors import UsageError
from radbench.options import cache_root
from radbench.models.base import file_fingerprint
from radbench.models.placement import SpreadPlan
from radbench.types import stable_hash


def load_state_dict(path: Path, model: str = "") -> dict[str, torch.Tensor]:
    """A flat ``name -> tensor`` dict from a checkpoint file, without executing pickled code.

    safetensors files are read directly; anything else goes through ``torch.load`` with
    ``weights_only=True`` and ``mmap=True`` where the file is a zip archive (torch >= 1.6 format),
    so a 52 GB fp32 checkpoint is paged in tensor by tensor. Training wrappers are unwrapped:
    ``{"model_state_dict": ...}`` / ``{"state_dict": ...}`` and a DDP ``module.`` prefix.
    Non-tensor entries (e.g. a bare ``torch.LongStorage`` in OpenFlamingo's v1 file) are dropped:
    no module parameter can come from them.
    """
    who = f"model {model!r}: " if model else ""
    if not path.is_file():
        raise UsageError(f"{who}checkpoint file {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: Any = load_file(str(path), device="cpu")
        else:
            if _is_torchscript(path):
                raise UsageError(
                    f"{who}{path} is a TorchScript archive; radbench loads only plain state dicts "
                    "(use the Hugging Face or safetensors copy of these weights)"
                )
            raw = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except UsageError:
        raise
    except pickle.UnpicklingError as exc:
        if needs_unpickling(exc):
            raise unsafe_pickle(who, path) from exc
        raise UsageError(f"{who}cannot read checkpoint {path}: not a checkpoint ({unpickling_reason(exc)})") from exc
    except Exception as exc:  # torch/safetensors raise many types for corrupt or unsafe files
        raise UsageError(f"{who}cannot read checkpoint {path}: {exc.__class__.__name__}: {first_line(exc)}") from exc
    for wrapper in ("model_state_dict", "state_dict", "model"):
        if isinstance(raw, Mapping) and wrapper in raw and isinstance(raw[wrapper], Mapping):
            raw = raw[wrapper]
    if not isinstance(raw, Mapping):
        raise UsageError(f"{who}{path} holds a {type(raw).__name__}, not a state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if isinstance(value, torch.Tensor):
            out[key[len("module.") :] if key.startswith("module.") else key] = value
    return out


def needs_unpickling(exc: BaseException) -> bool:
    """Whether ``torch.load(weights_only=True)`` refused a pickle for naming a class or function (rather
    than for being garbage bytes, which torch reports with the same exception and preamble)."""
    return isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc)


def unpickling_reason(exc: BaseException) -> str:
    """The informative part of torch's multi-paragraph ``UnpicklingError`` (its advice left out)."""
    text = " ".join(str(exc).split())
    reason = text.split("WeightsUnpickler error:", 1)[1].split(" Check the documentation")[0] if \
        "WeightsUnpickler error:" in text else first_line(exc)
    return reason.strip()[:200]


def unsafe_pickle(who: str, path: Path, folder: bool = False) -> UsageError:
    """The one-line refusal of a checkpoint that ``torch.load(weights_only=True)`` cannot read.

    torch's own message suggests ``weights_only=False``, which runs whatever code the file holds;
    radbench never does that, so the message gives the one-time conversion docs/security.md
    describes instead: the user decides to trust the file once, outside radbench.
    """
    target = f"{path}/model.safetensors" if folder else f"{path}.safetensors"
    source = f"{path}/pytorch_model.bin" if folder else str(path)
    return UsageError(
        f"{who}{path} holds pickled objects other than tensors, which radbench never unpickles (they can run code); "
        "if you trust its source, convert it once to safetensors: python -c \"import torch; from safetensors.torch "
        f"import save_file; sd = torch.load('{source}', map_location='cpu', weights_only=False); "
        "sd = sd.get('state_dict', sd); save_file({k: v.contiguous() for k, v in sd.items() "
        f"if isinstance(v, torch.Tensor)}}, '{target}')\""
        + (" and move the .bin file(s) out of the folder" if folder else " and pass the .safetensors file")
        + " (docs/security.md)")


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as zf:
        return any(name.split("/", 1)[-1].startswith("code/") for name in zf.namelist()[:200])


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else ""


def summarize_keys(keys: Sequence[str], limit: int = 6) -> str:
    """Keys grouped by pattern with layer indices collapsed, e.g. ``layers.{0..39}.mlp.up_proj.weight``.

    A checkpoint that misses a whole layer stack then reads as one line, not 360.
    """
    groups: dict[str, list[int]] = {}
    for key in keys:
        numbers = [int(n) for n in re.findall(r"(?<=\.)(\d+)(?=\.|$)", key)]
        pattern = re.sub(r"(?<=\.)\d+(?=\.|$)", "{i}", key)
        groups.setdefault(pattern, []).extend(numbers[:1])
    parts = []
    for pattern, numbers in sorted(groups.items()):
        if "{i}" in pattern and numbers:
            lo, hi = min(numbers), max(numbers)
            pattern = pattern.replace("{i}", f"{{{lo}..{hi}}}" if lo != hi else str(lo), 1)
        parts.append(pattern)
    shown = ", ".join(parts[:limit])
    more = f" and {len(parts) - limit} more patterns" if len(parts) > limit else ""
    return f"{shown}{more}"


@dataclass
class KeyReport:
    """What :func:`load_checked` did with a checkpoint's keys (kept for ``describe()``)."""

    loaded: int = 0
    dropped_stale: list[str] = field(default_factory=list)
    not_in_checkpoint: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "dropped_stale": summarize_keys(self.dropped_stale, limit=20) if self.dropped_stale else "",
            "filled_elsewhere": summarize_keys(self.not_in_checkpoint, limit=20) if self.not_in_checkpoint else "",
        }


def load_checked(
    module: torch.nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    model: str,
    source: Path | str,
    stale: Sequence[str] = (),
    not_in_checkpoint: Sequence[str] = (),
    plan: SpreadPlan | None = None,
) -> KeyReport:
    """Copy ``state_dict`` into ``module`` after checking every key; a mismatch is one line.

    ``stale``: regexes (``re.match``) of checkpoint keys dropped silently, each documented by the
    adapter (``rotary_emb.inv_freq`` saved by transformers 4.28, unused BERT heads). Every other
    checkpoint key must exist in ``module`` with the same shape. ``not_in_checkpoint``: regexes of
    module keys the checkpoint is known not to hold (Flamingo's LM decoder comes from ``lm_path``);
    every other module key must be in the checkpoint. Values are cast to each parameter's dtype.
    ``plan``: a model built by :func:`empty_init` is filled tensor by tensor onto the devices of a
    :func:`plan_spread` plan instead of being copied into in place.
    """
    own = module.state_dict()
    report = KeyReport()
    stale_re = [re.compile(p) for p in stale]
    absent_re = [re.compile(p) for p in not_in_checkpoint]
    usable: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in state_dict.items():
        if key in own:
            usable[key] = value
        elif any(r.match(key) for r in stale_re):
            report.dropped_stale.append(key)
        else:
            unexpected.append(key)
    missing = [k for k in own if k not in usable and not any(r.match(k) for r in absent_re)]
    report.not_in_checkpoint = [k for k in own if k not in usable and k not in missing]
    wrong_shape = [
        f"{k} {tuple(v.shape)} (model expects {tuple(own[k].shape)})"
        for k, v in usable.items()
        if tuple(v.shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {summarize_keys(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {summarize_keys(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} keys with the wrong shape: {', '.join(wrong_shape[:4])}")
    if problems:
        raise UsageError(f"model {model!r}: {source} does not match the architecture: {'; '.join(problems)}")
    if plan is not None:
        _stream_to_devices(module, usable, own, plan)
        report.loaded = len(usable)
        return report
    result = module.load_state_dict(usable, strict=False)
    report.loaded = len(usable) - len(result.unexpected_keys)
    return report


def _stream_to_devices(module: torch.nn.Module, usable: Mapping[str, torch.Tensor],
                       own: Mapping[str, torch.Tensor], plan: SpreadPlan) -> None:
    """Fill a model built by :func:`empty_init` tensor by tensor, each cast and put on its device.

    Host memory then holds one tensor at a time (plus the memory-mapped file's page cache), not
    the whole model, which a node loading several split replicas at once could not afford.
    """
    from accelerate.utils import set_module_tensor_to_device

    for key, value in usable.items():
        set_module_tensor_to_device(module, key, plan.device_of(key), value=value, dtype=own[key].dtype)
    # Building without weights registers a fresh meta tensor per name, so a model whose modules
    # share one (RadFM's token table) re-ties them itself.
    tie = getattr(module, "tie_weights", None)
    if callable(tie):
        tie()
    left = [name for name, param in module.named_parameters() if param.device.type == "meta"]
    if left and all(d.type != "meta" for d in plan.devices):
        raise RuntimeError(f"weights not in the checkpoint were left unbuilt: {summarize_keys(left)}")


@contextmanager
def fast_init(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Build modules directly on ``device`` in ``dtype`` and skip random init (weights come next).

    A 13B LM built the default way is initialised in fp32 on the CPU (52 GB, minutes) only to be
    overwritten by the checkpoint.
    """
    from transformers.initialization import no_init_weights

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device), no_init_weights():
            yield
    finally:
        torch.set_default_dtype(previous)


@contextmanager
def empty_init(dtype: torch.dtype) -> Iterator[None]:
    """Build modules with their weights on ``meta`` (no memory) in ``dtype``, buffers real on the CPU.

    For a model split over GPUs: :func:`load_checked` with a plan then puts each checkpoint tensor
    straight onto its GPU. Buffers computed at construction (rotary frequencies, position ids) keep
    their values, which a model built wholly on ``meta`` would lose.
    """
    from accelerate import init_empty_weights
    from transformers.initialization import no_init_weights

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with init_empty_weights(include_buffers=False), no_init_weights():
            yield
    finally:
        torch.set_default_dtype(previous)


def cached_file_fingerprint(paths: Sequence[Path], full: bool = False) -> str:
    """:func:`~radbench.models.base.file_fingerprint`, remembered per (path, size, mtime).

    Hashing 32 MiB of each of several multi-GB files is quick but not free; a run that resumes,
    or the next task on the same weights, reuses the value. A changed file changes the key.
    """
    # The value hashes the names the adapter reads (model.safetensors), never what a link points at:
    # huggingface_hub's snapshot links point at blobs named by hash, and the same bytes read through
    # the Hub cache or from a local folder must give one fingerprint (so a run resumes across the two).
    resolved = sorted((p.resolve(), p.name) for p in paths)
    key = stable_hash([[str(p), name, p.stat().st_size, p.stat().st_mtime_ns] for p, name in resolved] + [full])
    cache = cache_root() / "fingerprints"
    hit = cache / f"{key}.txt"
    if hit.is_file():
        return hit.read_text().strip()
    value = file_fingerprint(list(paths), full=full)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{key}.{os.getpid()}"
        tmp.write_text(value)
        os.replace(tmp, hit)
    except OSError:  # a read-only cache only costs the re-hash next time
        pass
    return value


def stable_fingerprint(model: str, weights_id: str, options: Mapping[str, Any]) -> str:
    """An adapter's fingerprint: its weights plus the load options that change outputs (dtype).

    Predictions are keyed by fingerprint, so an fp16 run must not resume from fp32 predictions.
    """
    return stable_hash([model, weights_id, dict(options)])


CONFIG_SIDECAR = "radbench_config.json"


def config_overrides(model: str, folder: Path, allowed: Sequence[str]) -> dict[str, Any]:
    """Architecture sizes from ``radbench_config.json`` beside a checkpoint, if the file is there.

    The released checkpoints need none (their sizes are built in); the file describes a variant
    with other sizes, e.g. the tiny checkpoints the tests write in the released key layout.
    """
    path = folder / CONFIG_SIDECAR
    if not path.is_file():
        return {}
    data = safe_io.read_json_object(path, f"model {model!r}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise UsageError(f"model {model!r}: {path} has unknown fields {', '.join(unknown)}")
    return data
