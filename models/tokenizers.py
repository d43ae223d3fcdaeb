"""Tokenizers as the released checkpoints ran them: slow SentencePiece or a converted fast LLaMA tokenizer, special tokens, id checks.

A shifted special-token id silently reads the wrong embedding row, so every adapter asserts the
ids its checkpoint was trained at (:func:`assert_token_ids`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from radbench.errors import UsageError
from radbench.models.loading import first_line

# Families whose authors ran the fast tokenizer transformers converted from tokenizer.model
# (``AutoTokenizer`` without ``use_fast=False``), and the release that converted it.
FAST_FAMILIES = {"medflamingo": "4.30", "llava-med": "4.36"}


def load_llama_tokenizer(model: str, folder: Path) -> Any:
    """The LLaMA-family tokenizer of ``folder/tokenizer.model`` as ``model``'s authors ran it.

    RadFM and MedVInT ran the slow ``LlamaTokenizer``: :class:`radbench.models.spm.SentencePieceTokenizer`
    (SentencePiece itself plus the slow tokenizer's splitting at added tokens), because transformers
    5.x's ``LlamaTokenizer`` splits runs of spaces, leading spaces and invalid UTF-8 bytes differently.
    Med-Flamingo and LLaVA-Med ran the fast tokenizer their transformers release converted from the
    same file (:data:`FAST_FAMILIES`): :class:`radbench.models.fast_llama.FastLlamaTokenizer`.
    ``bos=1, eos=2, unk=0`` is asserted.
    """
    from radbench.models import fast_llama
    from radbench.models.spm import SentencePieceTokenizer

    if not (folder / "tokenizer.model").exists():
        raise UsageError(f"model {model!r}: {folder} lacks tokenizer.model (the LLaMA SentencePiece tokenizer)")
    converter = {"4.30": fast_llama.TRANSFORMERS_4_30, "4.36": fast_llama.TRANSFORMERS_4_36}.get(
        FAST_FAMILIES.get(model, ""))
    try:
        if converter is None:
            tok: Any = SentencePieceTokenizer.from_folder(folder)
        else:
            tok = fast_llama.FastLlamaTokenizer.from_folder(folder, converter)
    except Exception as exc:  # sentencepiece/protobuf/json/tokenizers raise many types for a bad file
        raise UsageError(f"model {model!r}: cannot load the tokenizer in {folder}: {first_line(exc)}") from exc
    for token, expected in (("<unk>", 0), ("<s>", 1), ("</s>", 2)):
        got = tok.convert_tokens_to_ids(token)
        if got != expected:
            raise UsageError(f"model {model!r}: tokenizer in {folder} maps {token} to {got}, expected {expected}")
    return tok


def add_special_tokens(tokenizer: Any, tokens: Sequence[str], strip: bool) -> None:
    """Add ``tokens`` as special tokens, in order (their ids follow the base vocabulary).

    ``strip=True`` reproduces the slow tokenizer of transformers 4.28 (RadFM): a special token added
    as a plain string ate the whitespace on both sides. Fast tokenizers kept it (``strip=False``):
    open_flamingo's ``AutoTokenizer`` (Med-Flamingo, OpenFlamingo v1 and v2), checked with
    transformers 4.30.2 and 4.36.2.
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
