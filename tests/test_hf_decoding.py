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
