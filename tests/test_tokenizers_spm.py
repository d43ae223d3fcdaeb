"""RadFM and MedVInT tokenize and decode as SentencePiece under the authors' slow tokenizer.

(Med-Flamingo and LLaVA-Med ran the converted fast tokenizer: ``tests/test_tokenizers_fast.py``.)

The reference is ``sentencepiece`` itself on the same ``tokenizer.model``, plus the slow
``LlamaTokenizer``'s handling of added tokens re-derived here from transformers 4.28's
``PreTrainedTokenizer.tokenize``: the text is cut at each added token (leftmost, longest), the
neighbouring text is stripped on the sides the token asks for (both for tokens added as plain
strings, neither for LLaMA's ``<s>``/``</s>``/``<unk>``), empty chunks vanish, and every other chunk
is encoded by SentencePiece on its own. The models are tiny LLaMA-style models trained offline
(``tests/support/spm_models.py``), with and without the dummy prefix.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Callable

import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from radbench.errors import UsageError
from radbench.models import radfm, tokenizers
from radbench.models.spm import SentencePieceTokenizer
from tests.support import spm_models

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
RADFM_CONFIG = '{"bos_token": "", "eos_token": "", "model_max_length": 2048, "tokenizer_class": "LlamaTokenizer", ' \
               '"unk_token": ""}'
CONTROL = {"<unk>": (False, False), "<s>": (False, False), "</s>": (False, False)}

FRAGMENTS = (*spm_models.WORDS, " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "\t ", "0", "7", "12", "2048", "3.5",
             "é", "中", "Ω", "😀", "\x15", "ΈΑ", "\u00ad", "?", ")", ":", "-", "'", "▁")
words = st.lists(st.sampled_from(FRAGMENTS), max_size=12).map("".join)
texts = st.one_of(words, st.text(max_size=30), st.text(alphabet=" \t\nab1é😀", max_size=12))


def with_tokens(tokens: list[str]) -> st.SearchStrategy[str]:
    """Text with ``tokens`` (and near-misses such as ``<image`` or a doubled bracket) between the words."""
    misses = [t[:-1] for t in tokens] + [t + ">" for t in tokens]
    pieces = st.one_of(texts, st.sampled_from(tokens), st.sampled_from(misses))
    return st.lists(pieces, max_size=8).map("".join)


# ---------------------------------------------------------------------------------------------
# The reference: SentencePiece plus the slow tokenizer's splitting (transformers 4.28)
# ---------------------------------------------------------------------------------------------


def slow_tokenize(sp: spm.SentencePieceProcessor, text: str, tokens: dict[str, tuple[bool, bool]],
                  ids: Callable[[str], int]) -> list[int]:
    """``PreTrainedTokenizer.tokenize`` + ``convert_tokens_to_ids``; ``tokens`` maps to (lstrip, rstrip)."""
    parts: list[str] = []
    start = i = 0
    while i < len(text):
        match = max((t for t in tokens if text.startswith(t, i)), key=len, default=None)
        if match is None:
            i += 1
            continue
        if i > start:
            parts.append(text[start:i])
        parts.append(match)
        i = start = i + len(match)
    if start < len(text):
        parts.append(text[start:])
    for k, part in enumerate(parts):
        if part in tokens:
            lstrip, rstrip = tokens[part]
            if rstrip and k + 1 < len(parts) and parts[k + 1]:
                parts[k + 1] = parts[k + 1].lstrip()
            if lstrip and k > 0 and parts[k - 1]:
                parts[k - 1] = parts[k - 1].rstrip()
    out: list[int] = []
    for part in parts:
        if not part:
            continue
        out.extend([ids(part)] if part in tokens else sp.encode(part))
    return out


def sp_decode_without(sp: spm.SentencePieceProcessor, ids: list[int], skipped: set[int]) -> str:
    """``decode(skip_special_tokens=True)`` of the slow tokenizer: SentencePiece on what remains."""
    return sp.decode([i for i in ids if i not in skipped])


@pytest.fixture(scope="module", params=[True, False], ids=["dummy-prefix", "no-dummy-prefix"])
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spm_models.write_model(tmp_path_factory.mktemp("spm"), add_dummy_prefix=request.param)


@pytest.fixture(scope="module")
def radfm_folder(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same model beside RadFM's released ``tokenizer_config.json`` (empty special-token names)."""
    target = tmp_path_factory.mktemp("radfm")
    (target / "tokenizer.model").write_bytes((folder / "tokenizer.model").read_bytes())
    (target / "tokenizer_config.json").write_text(RADFM_CONFIG)
    return target


def processor(folder: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))


# ---------------------------------------------------------------------------------------------
# Plain text: SentencePiece itself
# ---------------------------------------------------------------------------------------------


@SETTINGS
@given(text=texts)
def test_plain_text_encodes_and_decodes_as_sentencepiece(folder: Path, text: str) -> None:
    assume(not any(t in text for t in CONTROL))
    sp, tok = processor(folder), tokenizers.load_llama_tokenizer("medvint", folder)
    ids = tok(text)["input_ids"]
    assert ids == [1] + sp.encode(text)
    assert tok.decode(ids, skip_special_tokens=True) == sp.decode(sp.encode(text))


@SETTINGS
@given(data=st.data())
def test_any_ids_decode_as_sentencepiece(folder: Path, data: st.DataObject) -> None:
    sp, tok = processor(folder), tokenizers.load_llama_tokenizer("medvint", folder)
    ids = data.draw(st.lists(st.integers(3, sp.get_piece_size() - 1), max_size=16))
    assert tok.decode(ids) == sp.decode(ids)
    framed = [1, *ids, 2]
    assert tok.decode(framed, skip_special_tokens=True) == sp.decode(ids)
    assert tok.batch_decode([framed, ids], skip_special_tokens=True) == [sp.decode(ids)] * 2


def test_an_invalid_utf8_byte_decodes_byte_by_byte(folder: Path) -> None:
    """``CE AD`` is ``έ``; ``C4`` starts a sequence ``15`` cannot continue: one U+FFFD, then ``\\x15``."""
    sp, tok = processor(folder), tokenizers.load_llama_tokenizer("radfm", folder)
    ids = [sp.piece_to_id(f"<0x{b:02X}>") for b in (0xCE, 0xAD, 0xC4, 0x15)]
    assert tok.decode(ids, skip_special_tokens=True) == sp.decode(ids) == "έ\ufffd\x15"


def test_runs_of_spaces_and_leading_spaces_keep_sentencepiece_pieces(folder: Path) -> None:
    """The splits transformers 5.x's ``LlamaTokenizer`` changes on this model (``▁▁`` merged first)."""
    sp, tok = processor(folder), tokenizers.load_llama_tokenizer("radfm", folder)
    for text in ("the  lungs", " lead", "?)  Answer:", "a\t\tb", "x \n y "):
        assert tok.convert_ids_to_tokens(tok(text)["input_ids"])[1:] == sp.encode(text, out_type=str)


# ---------------------------------------------------------------------------------------------
# Each adapter's added tokens
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def radfm_tokenizer(radfm_folder: Path) -> SentencePieceTokenizer:
    base = tokenizers.load_llama_tokenizer("radfm", radfm_folder)
    return radfm.prepare_tokenizer(base, radfm.RadFMConfig.tiny(len(base)))


@SETTINGS
@given(text=with_tokens(["<image>", "</image>", "<image0>", "<image1>", "<image31>", "<image3199>", "<s>"]))
def test_radfm_prompts_match_the_slow_tokenizer(radfm_tokenizer: SentencePieceTokenizer, radfm_folder: Path,
                                               text: str) -> None:
    """RadFM: 3202 tokens added as plain strings (both sides stripped); ``""`` names cut nothing."""
    sp, tok = processor(radfm_folder), radfm_tokenizer
    added = {t: (True, True) for t in radfm.special_tokens()}
    ids = tok(text)["input_ids"]
    assert ids == [1] + slow_tokenize(sp, text, added, tok.convert_tokens_to_ids)
    skipped = {0, 1, 2} | set(range(sp.get_piece_size(), len(tok)))
    assert tok.decode(ids, skip_special_tokens=True) == sp_decode_without(sp, ids, skipped)


def test_radfm_image_block_and_the_word_after_it(radfm_tokenizer: SentencePieceTokenizer,
                                                radfm_folder: Path) -> None:
    """The space after ``</image>`` is stripped; the word gets its own dummy prefix (if the model adds one)."""
    tok, sp = radfm_tokenizer, processor(radfm_folder)
    base, word = sp.get_piece_size(), sp.encode("Question")
    ids = tok("Is it normal? " + radfm.image_block(0) + " Question")["input_ids"]
    assert ids[-34 - len(word):] == [base] + list(range(base + 2, base + 34)) + [base + 1] + word
    assert tok.convert_ids_to_tokens(tok("<s>")["input_ids"])[1] != "<s>"  # RadFM's config names no <s>


# ---------------------------------------------------------------------------------------------
# The tokenizer's own contract
# ---------------------------------------------------------------------------------------------


def test_the_config_decides_bos_eos_and_the_names_cut_out(tmp_path: Path) -> None:
    folder = spm_models.write_model(tmp_path / "t", config='{"add_bos_token": false, "add_eos_token": true}')
    tok = tokenizers.load_llama_tokenizer("medvint", folder)
    ids = tok("a <s> b")["input_ids"]
    assert ids[0] != 1 and ids[-1] == 2 and 1 in ids


def test_pickling_keeps_added_tokens(radfm_tokenizer: SentencePieceTokenizer) -> None:
    copy = pickle.loads(pickle.dumps(radfm_tokenizer))
    text = "<image><image0>Question: what?</image>  Answer"
    assert copy(text)["input_ids"] == radfm_tokenizer(text)["input_ids"]
    assert len(copy) == len(radfm_tokenizer)


def test_a_folder_without_tokenizer_model_or_with_a_broken_one_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="lacks tokenizer.model"):
        tokenizers.load_llama_tokenizer("radfm", tmp_path)
    (tmp_path / "tokenizer.model").write_bytes(b"not a model")
    with pytest.raises(UsageError, match="cannot load the tokenizer"):
        tokenizers.load_llama_tokenizer("radfm", tmp_path)
