"""Torch and transformers helpers the released-checkpoint adapters share.

Why these exist instead of ``from_pretrained`` + ``generate``:

* The released checkpoints (RadFM, Flamingo, MedVInT, LLaVA-Med) are raw state dicts whose key
  layout is the authors' own; an adapter builds the architecture from a config and fills it with
  :func:`load_checked`, which reports wrong keys by name (a 500-line dump helps nobody) and drops
  only the stale keys each adapter documents.
* Loading never unpickles code: :func:`load_state_dict` reads safetensors, or ``torch.load`` with
  ``weights_only=True`` (and ``mmap`` so a 52 GB file is not read into RAM at once).
* :func:`greedy_generate` is one explicit left-padded greedy loop over a ``step`` function, so
  models that must re-condition every step (Flamingo's media locations) and models fed
  ``inputs_embeds`` (RadFM, MedVInT) share the same, batch-invariant decoding.

Everything here imports torch; keep :mod:`radbench.models.base` free of it.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch

from radbench.errors import UsageError
from radbench.models.base import Adapter
from radbench.types import stable_hash

# ---------------------------------------------------------------------------------------------
# --model-args parsing
# ---------------------------------------------------------------------------------------------

DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}
DTYPE_NAMES: dict[torch.dtype, str] = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def check_model_args(model: str, model_args: Mapping[str, str], allowed: Sequence[str]) -> None:
    """Refuse an unknown ``--model-args`` key in one line: a typo must not silently use a default."""
    unknown = sorted(set(model_args) - set(allowed))
    if unknown:
        raise UsageError(
            f"model {model!r}: unknown --model-args {', '.join(unknown)} (accepted: {', '.join(sorted(allowed))})"
        )


def parse_dtype(model: str, text: str | None, default: str = "fp32") -> torch.dtype:
    """``fp32|bf16|fp16`` (or the long names) -> torch dtype."""
    key = (text or default).strip().lower()
    if key not in DTYPES:
        raise UsageError(f"model {model!r}: dtype={text!r} is not one of fp32, bf16, fp16")
    return DTYPES[key]


def parse_device(model: str, text: str | None) -> torch.device:
    """``device=`` or the default: the first CUDA device when there is one, else the CPU."""
    if not text:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError as exc:
        raise UsageError(f"model {model!r}: device={text!r} is not a torch device ({exc})") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"model {model!r}: device={text!r} but this torch build sees no CUDA device")
    return device


def parse_bool(model: str, key: str, text: str | None, default: bool) -> bool:
    if text is None or text == "":
        return default
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"model {model!r}: {key}={text!r} is not a boolean (use 1 or 0)")


def parse_int(model: str, key: str, text: str | None, default: int, minimum: int = 1) -> int:
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise UsageError(f"model {model!r}: {key}={text!r} is not an integer") from exc
    if value < minimum:
        raise UsageError(f"model {model!r}: {key}={value} must be >= {minimum}")
    return value


def tiny_seed(model: str, model_args: Mapping[str, str]) -> int:
    """``seed=`` of ``preset=tiny-random`` (other tiny weights); meaningless, so refused, for real weights."""
    text = model_args.get("seed")
    if text is None:
        from radbench.models.tiny import TINY_SEED

        return TINY_SEED
    if not model_args.get("preset"):
        raise UsageError(f"model {model!r}: seed= only applies to preset=tiny-random (real weights are not random)")
    return parse_int(model, "seed", text, 0, minimum=0)


def require_file(model: str, key: str, path_text: str | None, expected: str, hint: str = "") -> Path:
    """The file (or folder) that ``--model-args key=PATH`` names, or a one-line error naming what was expected."""
    hint = f" ({hint})" if hint else ""
    if not path_text:
        raise UsageError(f"model {model!r} needs --model-args {key}=PATH: {expected}{hint}")
    path = Path(path_text).expanduser()
    if not path.exists():
        raise UsageError(f"model {model!r}: {key}={path} does not exist (expected {expected}){hint}")
    return path


def find_in(model: str, key: str, folder: Path, names: Sequence[str], expected: str) -> Path:
    """The first of ``names`` inside ``folder`` (or ``folder`` itself when it is one of them)."""
    if folder.is_file():
        if folder.name in names or not names:
            return folder
        raise UsageError(f"model {model!r}: {key}={folder} is not {expected}")
    for name in names:
        if (folder / name).exists():
            return folder / name
    raise UsageError(f"model {model!r}: {key}={folder} lacks {' or '.join(names)} (expected {expected})")


# ---------------------------------------------------------------------------------------------
# Safe state-dict loading and key checking
# ---------------------------------------------------------------------------------------------


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


def cache_root() -> Path:
    """radbench's cache folder (``RADBENCH_CACHE`` overrides), shared with the demo data."""
    return Path(os.environ.get("RADBENCH_CACHE") or Path.home() / ".cache" / "radbench")


def cached_file_fingerprint(paths: Sequence[Path], full: bool = False) -> str:
    """:func:`~radbench.models.base.file_fingerprint`, remembered per (path, size, mtime).

    Hashing 32 MiB of each of several multi-GB files is quick but not free; a run that resumes,
    or the next task on the same weights, reuses the value. A changed file changes the key.
    """
    from radbench.models.base import file_fingerprint

    resolved = sorted(p.resolve() for p in paths)
    key = stable_hash([[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in resolved] + [full])
    cache = cache_root() / "fingerprints"
    hit = cache / f"{key}.txt"
    if hit.is_file():
        return hit.read_text().strip()
    value = file_fingerprint(resolved, full=full)
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
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"model {model!r}: cannot read {path}: {exc}") from exc
    unknown = sorted(set(data) - set(allowed))
    if not isinstance(data, dict) or unknown:
        raise UsageError(f"model {model!r}: {path} has unknown fields {', '.join(unknown)}")
    return data


# ---------------------------------------------------------------------------------------------
# Batched greedy decoding
# ---------------------------------------------------------------------------------------------

Step = Callable[..., tuple[torch.Tensor, Any]]


def left_pad(sequences: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Token id lists -> ``(input_ids, attention_mask)``, padded on the left."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def left_pad_embeds(embeds: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L_i, d)`` embedding sequences -> ``(B, L, d)`` zero-padded on the left, plus the mask."""
    width = max(e.shape[0] for e in embeds)
    first = embeds[0]
    out = first.new_zeros((len(embeds), width, first.shape[-1]))
    mask = torch.zeros((len(embeds), width), dtype=torch.long, device=first.device)
    for row, e in enumerate(embeds):
        out[row, width - e.shape[0] :] = e
        mask[row, width - e.shape[0] :] = 1
    return out, mask


def cache_argument(model: torch.nn.Module) -> str:
    """The name a transformers model's ``forward`` takes its KV cache under.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (argument and output field). Both
    are supported: the wrong name would land in ``**kwargs`` unused, and every step after the
    prompt would then decode without its context.
    """
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def returned_cache(out: Any) -> Any:
    """The KV cache a transformers forward returned, under either name (see :func:`cache_argument`)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def hf_step(lm: torch.nn.Module) -> Step:
    """A :func:`greedy_generate` step over a transformers causal LM.

    ``position_ids`` are passed only to LMs that take them (MPT uses ALiBi and has none).
    """
    takes_positions = "position_ids" in inspect.signature(lm.forward).parameters
    cache_name = cache_argument(lm)

    def step(input_ids, inputs_embeds, attention_mask, position_ids, cache):  # type: ignore[no-untyped-def]
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, cache_name: cache, "use_cache": True}
        if takes_positions:
            kwargs["position_ids"] = position_ids
        if inputs_embeds is not None:
            kwargs["inputs_embeds"] = inputs_embeds
        else:
            kwargs["input_ids"] = input_ids
        out = lm(**kwargs, logits_to_keep=1)
        return out.logits[:, -1, :], returned_cache(out)

    return step


@torch.inference_mode()
def greedy_generate(
    step: Step,
    *,
    attention_mask: torch.Tensor,
    max_new_tokens: Sequence[int],
    eos_token_ids: Sequence[int],
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    suppress_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
) -> list[list[int]]:
    """Greedy decoding of a left-padded batch; returns each row's new tokens, EOS excluded.

    Positions count real tokens only (``cumsum(mask) - 1``), as transformers' ``generate`` does, so
    a row's output does not depend on how much padding its batch needed. Each row stops at its own
    ``max_new_tokens`` or at an EOS id; ``suppress_token_ids`` can never be chosen (rows such as
    Flamingo's untrained ``<image>``/``<PAD>`` logits).
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    batch = attention_mask.shape[0]
    limits = torch.tensor(list(max_new_tokens), device=attention_mask.device)
    eos = torch.tensor(list(eos_token_ids), device=attention_mask.device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    outputs: list[list[int]] = [[] for _ in range(batch)]
    done = limits <= 0
    cache: Any = None
    step_ids, step_embeds = input_ids, inputs_embeds
    for t in range(int(limits.max().item()) if batch else 0):
        logits, cache = step(step_ids, step_embeds, attention_mask, position_ids, cache)
        logits = logits.float()
        if suppress_token_ids:
            logits[:, list(suppress_token_ids)] = float("-inf")
        next_ids = logits.argmax(-1)
        finished_now = torch.isin(next_ids, eos)
        for row in range(batch):
            if not done[row] and not finished_now[row]:
                outputs[row].append(int(next_ids[row]))
        done = done | finished_now | (limits <= t + 1)
        if bool(done.all()):
            break
        next_ids = torch.where(done, torch.full_like(next_ids, pad_token_id), next_ids)
        step_ids, step_embeds = next_ids[:, None], None
        position_ids = attention_mask.sum(-1, keepdim=True)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=-1)
    return outputs


def max_new_tokens_of(model: str, gen_kwargs: Mapping[str, Any], default: int) -> int:
    """The request's ``max_new_tokens`` (default: the authors'); decoding is greedy only.

    Other settings that change decoding (sampling, beams) are refused rather than ignored, so a
    stored prediction never claims settings it was not produced with.
    """
    for key, value in gen_kwargs.items():
        if key == "max_new_tokens":
            continue
        if key == "do_sample" and not value:
            continue
        if key in ("num_beams", "num_return_sequences") and int(value) == 1:
            continue
        if key == "temperature" and not value:
            continue
        raise UsageError(f"model {model!r}: gen_kwargs {key}={value!r} is not supported (greedy decoding only)")
    value = gen_kwargs.get("max_new_tokens", default)
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"model {model!r}: max_new_tokens={value!r} is not an integer") from exc
    if number < 1:
        raise UsageError(f"model {model!r}: max_new_tokens must be >= 1, got {number}")
    return number


# ---------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------


def load_llama_tokenizer(model: str, folder: Path) -> Any:
    """The LLaMA-family SentencePiece tokenizer as the authors' slow ``LlamaTokenizer`` ran it.

    transformers 5.x's ``LlamaTokenizer`` no longer calls SentencePiece and splits runs of spaces,
    leading spaces and invalid UTF-8 bytes differently, so ``tokenizer.model`` is run through
    :class:`radbench.models.spm.SentencePieceTokenizer` (SentencePiece itself plus the slow
    tokenizer's splitting at added tokens). ``bos=1, eos=2, unk=0`` is asserted.
    """
    from radbench.models.spm import SentencePieceTokenizer

    if not (folder / "tokenizer.model").exists():
        raise UsageError(f"model {model!r}: {folder} lacks tokenizer.model (the LLaMA SentencePiece tokenizer)")
    try:
        tok = SentencePieceTokenizer.from_folder(folder)
    except Exception as exc:  # sentencepiece/json raise many types for a bad file
        raise UsageError(f"model {model!r}: cannot load the tokenizer in {folder}: {first_line(exc)}") from exc
    for token, expected in (("<unk>", 0), ("<s>", 1), ("</s>", 2)):
        got = tok.convert_tokens_to_ids(token)
        if got != expected:
            raise UsageError(f"model {model!r}: tokenizer in {folder} maps {token} to {got}, expected {expected}")
    return tok


def add_special_tokens(tokenizer: Any, tokens: Sequence[str], strip: bool) -> None:
    """Add ``tokens`` as special tokens, in order (their ids follow the base vocabulary).

    ``strip=True`` reproduces the slow tokenizers of transformers 4.28-4.30 (RadFM, Med-Flamingo,
    OpenFlamingo v1): a special token added as a plain string ate the whitespace on both sides.
    Fast tokenizers (OpenFlamingo v2's MPT/NeoX) kept it: ``strip=False``.
    """
    from tokenizers import AddedToken

    new = [AddedToken(t, lstrip=strip, rstrip=strip, special=True, normalized=False) for t in tokens]
    tokenizer.add_special_tokens({"extra_special_tokens": new}, replace_extra_special_tokens=False)


def assert_token_ids(model: str, tokenizer: Any, expected: Mapping[str, int]) -> None:
    """Special-token ids the checkpoint's embedding rows were trained at; a shift is a silent disaster."""
    for token, want in expected.items():
        got = tokenizer.convert_tokens_to_ids(token)
        if got != want:
            raise UsageError(f"model {model!r}: tokenizer maps {token} to id {got}, the checkpoint expects {want}")


# ---------------------------------------------------------------------------------------------
# One replica over several GPUs (``--model-args device_map=auto`` / ``gpus_per_replica=K``)
# ---------------------------------------------------------------------------------------------


def parse_placement(model: str, model_args: Mapping[str, str]) -> list[torch.device] | None:
    """The GPUs one replica is split over, or ``None`` for a single-device model.

    ``device_map=auto`` alone takes every visible GPU; ``gpus=0,1`` (which the runner writes from
    ``gpus_per_replica=K``, one disjoint block per rank) names them. ``device=`` cannot be combined:
    a split replica's inputs always start on its first GPU.
    """
    device_map, gpus = model_args.get("device_map"), model_args.get("gpus")
    if not device_map and not gpus:
        return None
    if device_map and device_map != "auto":
        raise UsageError(f"model {model!r}: device_map={device_map!r} is not supported "
                         "(use device_map=auto, optionally with gpus=0,1,...)")
    if model_args.get("device"):
        raise UsageError(f"model {model!r}: device= and device_map=/gpus= exclude each other "
                         "(a split model starts on the first of its gpus)")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise UsageError(f"model {model!r}: device_map=auto splits the model across CUDA GPUs, "
                         "but this torch build sees none")
    if not gpus:
        return [torch.device("cuda", i) for i in range(count)]
    try:
        indices = [int(g) for g in gpus.replace(";", ",").split(",") if g.strip()]
    except ValueError:
        raise UsageError(f"model {model!r}: gpus={gpus!r} is not a list of GPU indices (e.g. gpus=0,1)") from None
    bad = [i for i in indices if not 0 <= i < count]
    if not indices or bad or len(set(indices)) != len(indices):
        raise UsageError(f"model {model!r}: gpus={gpus!r} must name distinct GPUs among 0..{count - 1}")
    return [torch.device("cuda", i) for i in indices]


def parse_devices(model: str, model_args: Mapping[str, str]) -> tuple[torch.device, list[torch.device] | None]:
    """``(device to build on, GPUs to split over)``: a split model is built on the CPU, then spread."""
    devices = parse_placement(model, model_args)
    return (torch.device("cpu") if devices else parse_device(model, model_args.get("device"))), devices


def tensor_bytes(module: torch.nn.Module) -> int:
    """Bytes of a module's parameters and buffers, a tied tensor counted once."""
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        key = tensor.data_ptr() if tensor.device.type != "meta" else id(tensor)
        if key not in seen:
            seen.add(key)
            total += tensor.numel() * tensor.element_size()
    return total


def split_layers(fixed: int, layers: Sequence[int], parts: int) -> list[int]:
    """Which of ``parts`` devices each decoder layer goes to: contiguous runs, balanced in bytes.

    Device 0 also holds ``fixed`` bytes (vision tower, embeddings, final norm, LM head), so it
    takes fewer layers. A layer goes to the device whose equal share of the total its midpoint
    falls in; the result never decreases, so activations cross each GPU boundary once per step.
    """
    if parts < 1:
        raise ValueError("parts must be >= 1")
    share = (fixed + sum(layers)) / parts
    out, before = [], fixed
    for size in layers:
        out.append(min(parts - 1, int((before + size / 2) // share)) if share else 0)
        before += size
    return out


def free_gpu_bytes(device: torch.device) -> int:
    """Free memory on a CUDA device now (other processes' allocations included)."""
    return int(torch.cuda.mem_get_info(device)[0])


# A split must leave this share of each GPU's free memory for activations and the KV cache.
HEADROOM = 0.15


@dataclass
class SpreadPlan:
    """Where each part of a model goes when it is split over several devices (see :func:`plan_spread`)."""

    layers_path: str
    devices: list[torch.device]
    device_map: dict[str, torch.device]
    loose: list[str]  # tensors owned directly by a module on the path to the layers
    description: dict[str, Any]

    def device_of(self, key: str) -> torch.device:
        """The device of a parameter or buffer name: its longest prefix in the device map."""
        parts = key.split(".")
        for cut in range(len(parts), 0, -1):
            device = self.device_map.get(".".join(parts[:cut]))
            if device is not None:
                return device
        return self.devices[0]


def plan_spread(
    model: torch.nn.Module,
    layers_path: str,
    devices: Sequence[torch.device],
    *,
    name: str,
    free_bytes: Callable[[torch.device], int] | None = free_gpu_bytes,
) -> SpreadPlan:
    """Decide how ``model`` is split over ``devices`` by its decoder layers; moves nothing.

    Why not ``infer_auto_device_map``: every module outside the LM's layer stack (vision tower,
    resampler, embeddings, final norm, LM head) stays on ``devices[0]``, the adapter's input
    device. Adapter code that combines those modules' outputs (RadFM's visual rows into the token
    table, Flamingo's media, LLaVA's image features) then never sees two devices, logits come back
    where decoding runs, and only whole decoder layers (never split, so residual streams stay on
    one device) move. Works on a model whose weights are still on ``meta`` (sizes only), so the
    capacity check comes before a long load. ``free_bytes=None`` skips that check.
    """
    layer_list = model.get_submodule(layers_path)
    sizes = [tensor_bytes(layer) for layer in layer_list]
    fixed = tensor_bytes(model) - sum(sizes)
    assignment = split_layers(fixed, sizes, len(devices))
    load = [fixed if i == 0 else 0 for i in range(len(devices))]
    for size, part in zip(sizes, assignment):
        load[part] += size
    if free_bytes is not None:
        for device, need in zip(devices, load):
            have = free_bytes(device)
            if need > have * (1 - HEADROOM):
                raise UsageError(
                    f"model {name!r}: its share on {device} is {need / 2**30:.1f} GiB but only {have / 2**30:.1f} GiB "
                    f"is free (a {int(HEADROOM * 100)}% margin is kept for activations); use more GPUs "
                    "(gpus_per_replica=K) or a smaller dtype"
                )
    device_map: dict[str, torch.device] = {}
    loose: list[str] = []
    prefix = ""
    parent = model
    for step in layers_path.split("."):
        for child_name, _ in parent.named_children():
            if child_name != step:
                device_map[prefix + child_name] = devices[0]
        for tensor_name, _ in [*parent.named_parameters(recurse=False), *parent.named_buffers(recurse=False)]:
            loose.append(prefix + tensor_name)
            device_map[prefix + tensor_name] = devices[0]  # the coverage check needs them; moved by dispatch
        parent = getattr(parent, step)
        prefix += step + "."
    for index, part in enumerate(assignment):
        device_map[f"{layers_path}.{index}"] = devices[part]
    parts = []
    for part, device in enumerate(devices):
        owned = [i for i, a in enumerate(assignment) if a == part]
        span = "none" if not owned else str(owned[0]) if len(owned) == 1 else f"{owned[0]}-{owned[-1]}"
        parts.append({"device": str(device), "layers": span, "weights_mib": round(load[part] / 2**20, 1)})
    return SpreadPlan(layers_path, list(devices), device_map, loose, {"split_by": layers_path, "parts": parts})


def dispatch(model: torch.nn.Module, plan: SpreadPlan, skip_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Move ``model`` as ``plan`` says and hook every split part; returns the placement to record.

    The hooks that carry hidden states between GPUs are accelerate's, as in transformers' own
    ``device_map`` loading. Tensors already on their device (streamed there by
    :func:`load_checked`) stay where they are.
    """
    from accelerate import dispatch_model
    from accelerate.utils import set_module_tensor_to_device

    with warnings.catch_warnings():  # accelerate hooks modules only, so it warns about the loose tensors
        warnings.filterwarnings("ignore", message="The following device_map keys do not match any submodules")
        dispatch_model(model, device_map=plan.device_map, main_device=plan.devices[0],
                       skip_keys=list(skip_keys) or None, force_hooks=True)
    for tensor_name in plan.loose:
        set_module_tensor_to_device(model, tensor_name, plan.devices[0])
    return plan.description


class CheckpointAdapter(Adapter):
    """Base of the adapters that run released weights with torch.

    Each keeps the fingerprint of its weights, its dtype and device, where the weights came from
    (``source``) and its preprocessing (``spec``); :meth:`decoding_facts` adds what differs per family.
    """

    _fingerprint: str
    dtype: torch.dtype
    device: torch.device
    source: dict[str, Any]
    spec: Any
    supports_device_map = True
    # Where :meth:`spread` put the model (``None``: all of it on ``device``); not in the
    # fingerprint, since splitting layers across GPUs does not change the arithmetic.
    placement: dict[str, Any] | None = None

    def fingerprint(self) -> str:
        return self._fingerprint

    def split_points(self) -> tuple[torch.nn.Module, str, torch.nn.Module]:
        """``(model, dotted path of the LM's decoder-layer list, the transformers LM)`` for :meth:`spread`."""
        raise NotImplementedError

    def spread(self, devices: Sequence[torch.device] | None, check_memory: bool = True) -> "CheckpointAdapter":
        """Split the loaded model's decoder layers over ``devices`` (from :func:`parse_placement`); ``None``: no-op.

        ``check_memory=False`` skips the free-memory check (for devices that are not GPUs).
        """
        if not devices:
            return self
        model, layers_path, _ = self.split_points()
        return self.dispatch(plan_spread(model, layers_path, devices, name=self.name,
                                         free_bytes=free_gpu_bytes if check_memory else None))

    def dispatch(self, plan: SpreadPlan) -> "CheckpointAdapter":
        """Move the model as ``plan`` says (:func:`dispatch`); inputs then start on its first device."""
        model, _, lm = self.split_points()
        self.placement = dispatch(model, plan, sorted(getattr(lm, "_skip_keys_device_placement", None) or ()))
        self.device = plan.devices[0]
        return self

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "dtype": DTYPE_NAMES[self.dtype],
            "device": str(self.device),
            **({"placement": self.placement} if self.placement else {}),
            "source": self.source,
            **self.decoding_facts(),
            "preprocessing": self.spec.describe(),
        }
