"""radbench's greedy loop against transformers' own ``generate``, on a tiny random LLaMA.

The adapters decode with :func:`decoding.greedy_generate` over :func:`decoding.hf_step`, which passes the KV
cache under the name the installed transformers uses (``cache`` from 5.24, ``past_key_values``
before). A cache passed under the wrong name is swallowed by ``**kwargs`` and every step after the
prompt would run without context; this comparison is what catches it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from radbench.models import decoding  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_greedy_loop_equals_transformers_generate_on_a_left_padded_batch() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(3)
    lm = LlamaForCausalLM(LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                      pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()
    prompts = [[1, 17, 33, 45, 8, 61], [1, 90, 12]]
    input_ids, mask = decoding.left_pad(prompts, pad_id=0, device=torch.device("cpu"))
    ours = decoding.greedy_generate(decoding.hf_step(lm), input_ids=input_ids, attention_mask=mask, max_new_tokens=[12, 12],
                              eos_token_ids=[2], pad_token_id=0)
    with torch.inference_mode():
        theirs = lm.generate(input_ids=input_ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                             pad_token_id=0, eos_token_id=2)[:, input_ids.shape[1]:]
    expected = []
    for row in theirs.tolist():
        expected.append(row[: row.index(2)] if 2 in row else row)
    assert ours == expected
    assert any(len(set(row)) > 1 for row in ours)  # not a degenerate repeat of one token


def tiny_llama(seed: int = 3, vocab: int = 97):  # type: ignore[no-untyped-def]
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                        pad_token_id=0, bos_token_id=1, eos_token_id=2)).eval()


def transformers_beams(lm, prompt, eos, **settings):  # type: ignore[no-untyped-def]
    """transformers' own beam search on one unpadded prompt: the reference, EOS and fill cut off."""
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = lm.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                          pad_token_id=eos[0], eos_token_id=list(eos), **settings)[0, len(prompt):].tolist()
    for i, tok in enumerate(out):
        if tok in eos:
            return out[:i]
    return out


PROMPTS = [[1, 17, 33, 45, 8, 61], [1, 90, 12], [1, 5, 6, 7, 8, 9, 10, 11, 12], [1, 44]]


@pytest.mark.parametrize("settings", [
    {"num_beams": 3, "length_penalty": 1.0, "early_stopping": False},
    {"num_beams": 3, "length_penalty": 0.0, "early_stopping": False},   # OpenFlamingo's evaluate.py
    {"num_beams": 2, "length_penalty": -2.0, "early_stopping": True},
    {"num_beams": 4, "length_penalty": 2.0, "early_stopping": "never"},
])
def test_beam_search_equals_transformers_generate_per_prompt(settings) -> None:  # type: ignore[no-untyped-def]
    # eos 2 plus a frequent token as a second EOS, so hypotheses finish at several lengths
    lm = tiny_llama()
    eos = [2, 50]
    step = decoding.hf_step(lm)
    for prompt in PROMPTS:
        ids, mask = decoding.left_pad([prompt], pad_id=0, device=torch.device("cpu"))
        ours = decoding.beam_generate(step, input_ids=ids, attention_mask=mask, max_new_tokens=[10], eos_token_ids=eos,
                                      **settings)
        theirs = transformers_beams(lm, prompt, eos, max_new_tokens=10, **settings)
        assert ours == [theirs], (prompt, settings)


def test_beam_search_finds_an_eos_hypothesis_transformers_also_finds() -> None:
    """The comparison above is only meaningful if some beams end at an EOS before the limit."""
    lm = tiny_llama()
    lengths = []
    for eos_tok in range(3, 60):
        ids, mask = decoding.left_pad([PROMPTS[0]], pad_id=0, device=torch.device("cpu"))
        ours = decoding.beam_generate(decoding.hf_step(lm), input_ids=ids, attention_mask=mask, max_new_tokens=[8],
                                      eos_token_ids=[eos_tok], num_beams=3, length_penalty=1.0)
        theirs = transformers_beams(lm, PROMPTS[0], [eos_tok], max_new_tokens=8, num_beams=3, length_penalty=1.0)
        assert ours == [theirs], eos_tok
        lengths.append(len(ours[0]))
    assert min(lengths) < 8  # some searches stopped at their EOS


def test_beam_search_is_batch_invariant() -> None:
    lm = tiny_llama()
    step = decoding.hf_step(lm)
    eos = [2, 50]
    limits = [9, 4, 12, 7]  # per-row limits: a row's own limit finishes it
    ids, mask = decoding.left_pad(PROMPTS, pad_id=0, device=torch.device("cpu"))
    batched = decoding.beam_generate(step, input_ids=ids, attention_mask=mask, max_new_tokens=limits,
                                     eos_token_ids=eos, num_beams=3, length_penalty=1.0)
    alone = []
    for prompt, limit in zip(PROMPTS, limits):
        one, one_mask = decoding.left_pad([prompt], pad_id=0, device=torch.device("cpu"))
        alone += decoding.beam_generate(step, input_ids=one, attention_mask=one_mask, max_new_tokens=[limit],
                                        eos_token_ids=eos, num_beams=3, length_penalty=1.0)
    assert batched == alone
    assert [len(r) <= n for r, n in zip(batched, limits)] == [True] * 4
    # and on inputs_embeds (RadFM, MedVInT feed embeddings), equal to the same prompt as ids
    embeds, emask = decoding.left_pad_embeds([lm.get_input_embeddings()(torch.tensor(p)) for p in PROMPTS])
    with torch.inference_mode():
        from_embeds = decoding.beam_generate(step, inputs_embeds=embeds, attention_mask=emask, max_new_tokens=limits,
                                             eos_token_ids=eos, num_beams=3, length_penalty=1.0)
    assert from_embeds == batched


def test_beam_search_with_one_beam_is_greedy() -> None:
    lm = tiny_llama()
    ids, mask = decoding.left_pad(PROMPTS, pad_id=0, device=torch.device("cpu"))
    kwargs = {"input_ids": ids, "attention_mask": mask, "max_new_tokens": [6, 6, 6, 6], "eos_token_ids": [2, 50]}
    assert decoding.beam_generate(decoding.hf_step(lm), num_beams=1, **kwargs) == \
        decoding.greedy_generate(decoding.hf_step(lm), **kwargs)


class CountingStep:
    """A model-free step (the next token's logits depend on the last token and the step): no host copies."""

    def __init__(self, vocab: int = 11) -> None:
        torch.manual_seed(0)
        self.table = torch.randn(vocab, vocab)

    def __call__(self, ids, embeds, attention_mask, position_ids, cache):  # type: ignore[no-untyped-def]
        last = ids[:, -1]
        count = torch.zeros(ids.shape[0], dtype=torch.long) if cache is None else cache + 1
        return self.table[last] + 0.37 * count[:, None].float(), count


def reference_greedy(step, prompts, limits, eos):  # type: ignore[no-untyped-def]
    """Row by row, in plain Python: the semantics greedy_generate must keep."""
    out = []
    for prompt, limit in zip(prompts, limits):
        ids, cache, row = torch.tensor([prompt]), None, []
        for _ in range(limit):
            logits, cache = step(ids, None, None, None, cache)
            tok = int(logits[0].argmax())
            if tok in eos:
                break
            row.append(tok)
            ids = torch.tensor([[tok]])
        out.append(row)
    return out


def test_greedy_copies_to_the_host_once_per_step(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    step = CountingStep()
    prompts = [[3, 4], [5], [7, 8, 9], [1]]
    limits, eos = [6, 9, 3, 9], [2]
    expected = reference_greedy(step, prompts, limits, eos)
    ids, mask = decoding.left_pad(prompts, pad_id=0, device=torch.device("cpu"))
    calls = {"n": 0, "steps": 0}

    def counted(name):  # type: ignore[no-untyped-def]
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            return original(self, *args, **kwargs)
        return wrapper

    def counted_step(*args):  # type: ignore[no-untyped-def]
        calls["steps"] += 1
        return step(*args)

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, counted(name))
    ours = decoding.greedy_generate(counted_step, input_ids=ids, attention_mask=mask, max_new_tokens=limits,
                                    eos_token_ids=eos)
    monkeypatch.undo()
    assert ours == expected
    assert calls["steps"] >= 3
    assert 2 <= calls["n"] <= calls["steps"] + 1  # one per step, one for the tokens at the end (counters work)
    assert max(len(r) for r in ours) >= 3


def test_beam_search_copies_to_the_host_once_per_step(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    step = CountingStep()
    ids, mask = decoding.left_pad([[3, 4], [5], [7, 8, 9]], pad_id=0, device=torch.device("cpu"))

    def run():  # type: ignore[no-untyped-def]
        return decoding.beam_generate(step, input_ids=ids, attention_mask=mask, max_new_tokens=[5, 5, 5],
                                      eos_token_ids=[2], num_beams=3)
    expected = run()
    calls = {"n": 0}

    def counter(name):  # type: ignore[no-untyped-def]
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            calls["n"] += 1
            return original(self, *args, **kwargs)
        return wrapper

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__"):
        monkeypatch.setattr(torch.Tensor, name, counter(name))
    assert run() == expected
    monkeypatch.undo()
    assert 2 <= calls["n"] <= 5 + 2  # one per step, two at the end (lengths, tokens)


def test_gen_kwargs_parse_beam_settings_and_refuse_the_rest() -> None:
    from radbench.errors import UsageError

    found = decoding.decoding_of("m", {"num_beams": "3", "length_penalty": "0.0"}, 5)
    assert found == decoding.Decoding(max_new_tokens=5, num_beams=3, length_penalty=0.0, early_stopping=False)
    assert decoding.decoding_of("m", {}, 7, {"num_beams": 3}).num_beams == 3
    assert decoding.decoding_of("m", {"num_beams": 1}, 7, {"num_beams": 3}).num_beams == 3  # the protocol wins
    assert decoding.decoding_of("m", {"early_stopping": "never"}, 7).early_stopping == "never"
    for bad in ({"do_sample": True}, {"num_beams": 0}, {"top_p": 0.9}, {"early_stopping": "maybe"}):
        with pytest.raises(UsageError):
            decoding.decoding_of("m", bad, 5)
    with pytest.raises(UsageError, match="mixes beam settings"):
        decoding.batch_beams("m", [decoding.Decoding(5, 3), decoding.Decoding(5, 1)])
