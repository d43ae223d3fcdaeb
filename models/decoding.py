"""Batched decoding shared by the released-checkpoint adapters: padding, greedy and beam search, limits.

Why not transformers' ``generate``: :func:`greedy_generate` and :func:`beam_generate` are explicit
left-padded loops over one ``step`` function, so models that must re-condition every step
(Flamingo's media locations) and models fed ``inputs_embeds`` (RadFM, MedVInT) share the same,
batch-invariant decoding. Beam search follows transformers' own (``length_penalty``,
``early_stopping``, EOS only among the top ``num_beams`` candidates), with each batch row's beams
kept apart, so a sample's answer does not depend on its batch.

Both loops keep their bookkeeping on the device and copy to the host once per step (the "is every
row done" flag) plus once at the end (the tokens): on a GPU, a copy per row per step would stall
the device once per sequence.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
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
    batch, device = attention_mask.shape[0], attention_mask.device
    steps = max(max_new_tokens) if batch else 0
    limits = torch.tensor(list(max_new_tokens), device=device)
    eos = torch.tensor(list(eos_token_ids), device=device)
    suppress = torch.tensor(list(suppress_token_ids), dtype=torch.long, device=device) if suppress_token_ids else None
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    tokens = torch.full((batch, max(steps, 0)), -1, dtype=torch.long, device=device)  # -1: no token
    done = limits <= 0
    cache: Any = None
    step_ids, step_embeds = input_ids, inputs_embeds
    for t in range(steps):
        logits, cache = step(step_ids, step_embeds, attention_mask, position_ids, cache)
        logits = logits.float()
        if suppress is not None:
            logits.index_fill_(1, suppress, float("-inf"))
        next_ids = logits.argmax(-1)
        finished_now = torch.isin(next_ids, eos)
        tokens[:, t] = torch.where(done | finished_now, torch.full_like(next_ids, -1), next_ids)
        done = done | finished_now | (limits <= t + 1)
        if bool(done.all()):  # the step's one device-to-host copy
            break
        next_ids = torch.where(done, torch.full_like(next_ids, pad_token_id), next_ids)
        step_ids, step_embeds = next_ids[:, None], None
        position_ids = attention_mask.sum(-1, keepdim=True)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch, 1))], dim=-1)
    # A row's tokens are a prefix of its -1-padded row: once done, nothing more is written.
    return [[tok for tok in row if tok >= 0] for row in tokens.tolist()]


def reorder_cache(cache: Any, index: torch.Tensor) -> Any:
    """The KV cache with its batch rows taken in ``index`` order (beam search's survivors).

    transformers' ``Cache`` objects reorder in place; a legacy nested tuple of tensors is rebuilt.
    """
    if cache is None:
        return None
    if hasattr(cache, "reorder_cache"):
        cache.reorder_cache(index)
        return cache
    if torch.is_tensor(cache):
        return cache.index_select(0, index.to(cache.device))
    if isinstance(cache, (tuple, list)):
        return type(cache)(reorder_cache(part, index) for part in cache)
    raise TypeError(f"cannot reorder a KV cache of type {type(cache).__name__} for beam search")


@torch.inference_mode()
def beam_generate(
    step: Step,
    *,
    attention_mask: torch.Tensor,
    max_new_tokens: Sequence[int],
    eos_token_ids: Sequence[int],
    num_beams: int,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    suppress_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
) -> list[list[int]]:
    """Beam search over a left-padded batch; returns each row's best hypothesis, EOS excluded.

    The rules are transformers' (5.x ``_beam_search``), so that a row decoded alone equals
    ``generate(num_beams=N, length_penalty=..., early_stopping=...)``: scores are summed
    log-probabilities; each step keeps the best ``max(2, 1 + n_eos) * num_beams`` candidates over
    all beams; a candidate ending in EOS (or at the row's length limit) becomes a finished
    hypothesis only if it ranks among the top ``num_beams``, scored ``sum_logprobs / len **
    length_penalty`` with ``len`` counting the new tokens, EOS included; ``early_stopping`` is
    ``True`` (stop once ``num_beams`` hypotheses are finished), ``False`` (stop when the best running
    beam, at its current length, cannot beat the worst finished one) or ``"never"``.

    The batch is expanded to ``batch * num_beams`` rows before the prompt (as transformers does):
    a ``step`` that conditions on per-row side inputs (Flamingo's media, LLaVA's pixels) must be
    given them repeated ``num_beams`` times per row, in row order. Each row's beams only ever
    compete with each other, and a row's own ``max_new_tokens`` finishes it, so the result for a
    row does not depend on the rest of its batch.
    """
    if (input_ids is None) == (inputs_embeds is None):
        raise ValueError("pass exactly one of input_ids and inputs_embeds")
    if num_beams < 1:
        raise ValueError("num_beams must be >= 1")
    batch, device = attention_mask.shape[0], attention_mask.device
    if batch == 0:
        return []
    k = num_beams
    steps = max(max_new_tokens)
    limits = torch.tensor(list(max_new_tokens), device=device)[:, None]  # (B, 1)
    eos = torch.tensor(list(eos_token_ids), device=device)
    suppress = torch.tensor(list(suppress_token_ids), dtype=torch.long, device=device) if suppress_token_ids else None
    keep = max(2, 1 + len(eos_token_ids)) * k
    top_k_mask = torch.arange(keep, device=device) < k
    row_offset = (torch.arange(batch, device=device) * k)[:, None]

    attention_mask = attention_mask.repeat_interleave(k, dim=0)
    step_ids = input_ids.repeat_interleave(k, dim=0) if input_ids is not None else None
    step_embeds = inputs_embeds.repeat_interleave(k, dim=0) if inputs_embeds is not None else None
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)

    running = torch.full((batch, k, steps), pad_token_id, dtype=torch.long, device=device)
    running_scores = torch.zeros((batch, k), dtype=torch.float, device=device)
    running_scores[:, 1:] = -1.0e9  # the first step expands beam 0 only: the copies are identical
    finished = running.clone()
    finished_len = torch.zeros((batch, k), dtype=torch.long, device=device)
    finished_scores = torch.full((batch, k), -1.0e9, dtype=torch.float, device=device)
    is_finished = torch.zeros((batch, k), dtype=torch.bool, device=device)
    improvable = torch.ones((batch, 1), dtype=torch.bool, device=device)  # open rows
    cache: Any = None
    for t in range(steps):
        logits, cache = step(step_ids, step_embeds, attention_mask, position_ids, cache)
        log_probs = torch.log_softmax(logits.float(), dim=-1)
        if suppress is not None:
            log_probs.index_fill_(1, suppress, float("-inf"))
        vocab = log_probs.shape[-1]
        scores = (log_probs.view(batch, k, vocab) + running_scores[:, :, None]).view(batch, k * vocab)
        top_scores, top_index = torch.topk(scores, k=keep)
        source = top_index // vocab
        token = top_index % vocab
        candidates = running.gather(1, source[:, :, None].expand(-1, -1, steps)).clone()
        candidates[:, :, t] = token
        ends_eos = torch.isin(token, eos)
        hits = ends_eos | (limits <= t + 1)

        # The best num_beams candidates that did not stop carry on.
        carry_scores = top_scores + hits.to(torch.float32) * -1.0e9
        carry = torch.topk(carry_scores, k=k)[1]
        running = candidates.gather(1, carry[:, :, None].expand(-1, -1, steps))
        running_scores = carry_scores.gather(1, carry)
        survivors = (source.gather(1, carry) + row_offset).flatten()

        # Candidates among the top num_beams that stopped become hypotheses, if they can still count.
        just_finished = hits & top_k_mask[None, :]
        penalised = top_scores / ((t + 1) ** length_penalty)
        full = is_finished.all(dim=-1, keepdim=True) & (early_stopping is True)
        penalised = penalised + full.to(torch.float32) * -1.0e9
        penalised = penalised + (~improvable).to(torch.float32) * -1.0e9
        penalised = penalised + (~just_finished) * -1.0e9
        merged_scores = torch.cat((finished_scores, penalised), dim=1)
        best = torch.topk(merged_scores, k=k)[1]
        merged_tokens = torch.cat((finished, candidates), dim=1)
        finished = merged_tokens.gather(1, best[:, :, None].expand(-1, -1, steps))
        finished_scores = merged_scores.gather(1, best)
        candidate_len = (t + 1) - ends_eos.long()  # the EOS is not part of the answer
        finished_len = torch.cat((finished_len, candidate_len), dim=1).gather(1, best)
        is_finished = torch.cat((is_finished, just_finished), dim=1).gather(1, best)

        cache = reorder_cache(cache, survivors)
        generated = t + 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = limits.to(torch.float32)
        else:
            best_length = torch.full_like(limits, generated, dtype=torch.float32)
        best_possible = running_scores[:, :1] / (best_length**length_penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True)[0], -1.0e9)
        improvable = improvable & torch.any(best_possible > worst_finished, dim=-1, keepdim=True)
        improvable = improvable & (limits > t + 1)  # a row at its length limit has finished
        row_done = ~improvable[:, 0] | (is_finished.all(dim=-1) & (early_stopping is True))
        if bool(row_done.all()):  # the step's one device-to-host copy
            break
        step_ids, step_embeds = running[:, :, t].reshape(-1, 1), None
        position_ids = attention_mask.sum(-1, keepdim=True)
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((batch * k, 1))], dim=-1)
    lengths, rows = finished_len[:, 0].tolist(), finished[:, 0].tolist()
    return [row[:n] for row, n in zip(rows, lengths)]


@dataclass(frozen=True)
class Decoding:
    """How a request is decoded: greedy when ``num_beams == 1``, else beam search (:func:`beam_generate`)."""

    max_new_tokens: int
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False

    def beam_settings(self) -> tuple[int, float, bool | str]:
        return self.num_beams, self.length_penalty, self.early_stopping

    def describe(self) -> dict[str, Any]:
        if self.num_beams == 1:
            return {"greedy": True, "max_new_tokens": self.max_new_tokens}
        return {"num_beams": self.num_beams, "length_penalty": self.length_penalty,
                "early_stopping": self.early_stopping, "max_new_tokens": self.max_new_tokens}


def batch_beams(model: str, decodings: Sequence[Decoding]) -> int:
    """The batch's ``num_beams``; every request of one batch must share its beam settings."""
    settings = {d.beam_settings() for d in decodings}
    if len(settings) > 1:
        raise UsageError(f"model {model!r}: one batch mixes beam settings {sorted(settings, key=str)}; "
                         "run requests with different num_beams/length_penalty/early_stopping separately")
    return decodings[0].num_beams if decodings else 1


def generate(
    step: Step,
    *,
    attention_mask: torch.Tensor,
    decodings: Sequence[Decoding],
    eos_token_ids: Sequence[int],
    input_ids: torch.Tensor | None = None,
    inputs_embeds: torch.Tensor | None = None,
    suppress_token_ids: Sequence[int] = (),
    pad_token_id: int = 0,
) -> list[list[int]]:
    """Each row's new tokens under its :class:`Decoding`: :func:`greedy_generate` or :func:`beam_generate`."""
    common = {"attention_mask": attention_mask, "max_new_tokens": [d.max_new_tokens for d in decodings],
              "eos_token_ids": eos_token_ids, "input_ids": input_ids, "inputs_embeds": inputs_embeds,
              "suppress_token_ids": suppress_token_ids, "pad_token_id": pad_token_id}
    if not decodings or decodings[0].num_beams == 1:
        return greedy_generate(step, **common)
    beams, length_penalty, early_stopping = decodings[0].beam_settings()
    return beam_generate(step, num_beams=beams, length_penalty=length_penalty, early_stopping=early_stopping, **common)


def _early_stopping(model: str, value: Any) -> bool | str:
    text = str(value).strip().lower()
    if text == "never":
        return "never"
    if text in ("1", "true", "yes"):
        return True
    if text in ("0", "false", "no"):
        return False
    raise UsageError(f"model {model!r}: early_stopping={value!r}; use true, false or never")


def decoding_of(model: str, gen_kwargs: Mapping[str, Any], default_max_new_tokens: int,
                overrides: Mapping[str, Any] | None = None) -> Decoding:
    """The request's :class:`Decoding`: ``overrides`` (``protocol=authors``: the release's own
    settings, which must hold whatever the task asks) over its ``gen_kwargs`` over greedy.

    Accepted: ``max_new_tokens``, ``num_beams``, ``length_penalty``, ``early_stopping``, and the
    no-op forms of sampling (``do_sample=0``, ``temperature=0``, ``num_return_sequences=1``).
    Anything else that changes decoding is refused rather than ignored, so a stored prediction
    never claims settings it was not produced with.
    """
    merged = {**gen_kwargs, **(overrides or {})}
    for key, value in merged.items():
        if key in ("max_new_tokens", "num_beams", "length_penalty", "early_stopping"):
            continue
        if key == "do_sample" and not value:
            continue
        if key == "num_return_sequences" and int(value) == 1:
            continue
        if key == "temperature" and not value:
            continue
        raise UsageError(f"model {model!r}: gen_kwargs {key}={value!r} is not supported "
                         "(greedy or beam search only: max_new_tokens, num_beams, length_penalty, early_stopping)")
    number = _integer(model, "max_new_tokens", merged.get("max_new_tokens", default_max_new_tokens))
    beams = _integer(model, "num_beams", merged.get("num_beams", 1))
    try:
        length_penalty = float(merged.get("length_penalty", 1.0))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"model {model!r}: length_penalty={merged['length_penalty']!r} is not a number") from exc
    early = _early_stopping(model, merged.get("early_stopping", False))
    return Decoding(max_new_tokens=number, num_beams=beams, length_penalty=length_penalty, early_stopping=early)


def _integer(model: str, key: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"model {model!r}: {key}={value!r} is not an integer") from exc
    if number < 1:
        raise UsageError(f"model {model!r}: {key} must be >= 1, got {number}")
    return number


def max_new_tokens_of(model: str, gen_kwargs: Mapping[str, Any], default: int) -> int:
    """The request's ``max_new_tokens`` (default: the authors'), for a caller that decodes greedily only."""
    found = decoding_of(model, gen_kwargs, default)
    if found.num_beams != 1:
        raise UsageError(f"model {model!r}: num_beams={found.num_beams} is not supported here (greedy only)")
    return found.max_new_tokens
