"""Batched greedy decoding shared by the released-checkpoint adapters: padding, the step loop, limits.

Why not transformers' ``generate``: :func:`greedy_generate` is one explicit left-padded greedy loop
over a ``step`` function, so models that must re-condition every step (Flamingo's media
locations) and models fed ``inputs_embeds`` (RadFM, MedVInT) share the same, batch-invariant
decoding. Beam search or sampling would be a second loop here, beside this one.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Sequence

import torch

from radbench.errors import UsageError

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
