"""OpenFlamingo v2's byte-level BPE (MPT/GPT-NeoX) tokenizer as open_flamingo's factory prepares it.

The reference is the ``tokenizers`` object itself with ``add_special_tokens`` called as transformers
4.x's fast tokenizer called it for ``{"additional_special_tokens": [...]}`` (plain strings: no
whitespace is stripped, so the ``"\\n"`` after ``<|endofchunk|>`` in few-shot prompts stays a token).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from radbench.models import flamingo_convert, flamingo_modeling, tiny

SPECIALS = [flamingo_modeling.IMAGE, flamingo_modeling.EOC, flamingo_modeling.PAD]
texts = st.lists(st.one_of(st.text(max_size=20), st.sampled_from(SPECIALS), st.sampled_from([" ", "\n", "  ", "\t"])),
                 max_size=10).map("".join)


def reference() -> Tokenizer:
    ref = Tokenizer.from_str(tiny.tiny_bpe_tokenizer().backend_tokenizer.to_str())
    ref.add_special_tokens([flamingo_modeling.EOC, flamingo_modeling.IMAGE])
    ref.add_special_tokens([flamingo_modeling.PAD])
    return ref


def test_a_newline_after_endofchunk_is_kept() -> None:
    tok = flamingo_convert.prepare_tokenizer("openflamingo", tiny.tiny_bpe_tokenizer())
    prompt = "<image>Question:What is this? Short answer:cat<|endofchunk|>\n<image>Question:x Short answer:"
    ids = tok(prompt)["input_ids"]
    assert ids == reference().encode(prompt).ids
    eoc = tok.convert_tokens_to_ids(flamingo_modeling.EOC)
    assert tok.decode(ids[ids.index(eoc) + 1:ids.index(eoc) + 2]) == "\n"


@settings(max_examples=60, deadline=None)
@given(text=texts)
def test_prompts_encode_and_decode_as_the_reference(text: str) -> None:
    tok = flamingo_convert.prepare_tokenizer("openflamingo", tiny.tiny_bpe_tokenizer())
    ref = reference()
    ids = tok(text)["input_ids"]
    assert ids == ref.encode(text).ids
    assert tok.decode(ids, skip_special_tokens=True) == ref.decode(ids, skip_special_tokens=True)


def test_a_tokenizer_that_already_holds_the_flamingo_tokens_keeps_their_ids(tmp_path: Path) -> None:
    """open_flamingo adds nothing that is there already (a tokenizer saved after its factory ran)."""
    from transformers import AutoTokenizer

    first = flamingo_convert.prepare_tokenizer("openflamingo", tiny.tiny_bpe_tokenizer())
    first.save_pretrained(tmp_path)
    again = flamingo_convert.prepare_tokenizer("openflamingo", AutoTokenizer.from_pretrained(tmp_path))
    assert len(again) == len(first)
    assert again.convert_tokens_to_ids(SPECIALS) == first.convert_tokens_to_ids(SPECIALS)
    assert again.pad_token_id == first.pad_token_id
    prompt = "<image>Output:a cat<|endofchunk|>\n<image>Output:"
    assert again(prompt)["input_ids"] == first(prompt)["input_ids"]
