"""Med-Flamingo and LLaVA-Med tokenize and decode as the fast tokenizer their transformers release converted.

The references in ``tests/data/fast_llama_<version>.json`` were written by transformers 4.30.2
(tokenizers 0.13.3; Med-Flamingo's era) and 4.36.2 (tokenizers 0.15.2; LLaVA-Med's pin) themselves,
on the tiny LLaMA-style SentencePiece models of ``tests/support/spm_models.py``
(``tests/support/make_fast_references.py`` says how). ``radbench.models.fast_llama`` must equal them id
for id and character for character; the models trained here must be byte-identical to the ones the
references were made from (their SHA-256 is stored).
"""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path
from typing import Any

import pytest
import sentencepiece as spm
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from radbench.models import fast_llama, flamingo, flamingo_convert, llava_med, tokenizers
from radbench.types import ImageRef, Request, Segment, Turn
from tests.support import spm_models

DATA = Path(__file__).parent / "data"
FAMILY = {"4.30": "medflamingo", "4.36": "llava-med"}
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PREFIX = {"dummy-prefix": True, "no-dummy-prefix": False}


def reference(version: str) -> dict[str, Any]:
    return json.loads((DATA / f"fast_llama_{version}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module", params=[(v, m) for v in FAMILY for m in PREFIX], ids=lambda p: f"{p[0]}-{p[1]}")
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any], Path]:
    version, model = request.param
    folder = spm_models.write_model(tmp_path_factory.mktemp("fast"), PREFIX[model],
                                    config='{"tokenizer_class": "LlamaTokenizer"}')
    return version, reference(version)["models"][model], folder


def test_the_references_come_from_these_models_and_versions(case: tuple[str, dict[str, Any], Path]) -> None:
    version, ref, folder = case
    assert hashlib.sha256((folder / "tokenizer.model").read_bytes()).hexdigest() == ref["sha256"]
    meta = reference(version)
    assert (meta["transformers"], meta["tokenizers"]) == {"4.30": ("4.30.2", "0.13.3"),
                                                         "4.36": ("4.36.2", "0.15.2")}[version]


def test_plain_text_and_decoding_equal_the_release(case: tuple[str, dict[str, Any], Path]) -> None:
    version, ref, folder = case
    tok = tokenizers.load_llama_tokenizer(FAMILY[version], folder)
    assert isinstance(tok, fast_llama.FastLlamaTokenizer)
    for row in ref["plain"]:
        ids = tok(row["text"])["input_ids"]
        assert (ids, tok.convert_ids_to_tokens(ids)) == (row["ids"], row["tokens"]), row["text"]
        assert (tok.decode(ids), tok.decode(ids, skip_special_tokens=True)) == (row["decoded"], row["skipped"])
    for row in ref["decode"]:  # any ids, invalid UTF-8 byte runs included
        assert tok.decode(row["ids"]) == row["text"], row["ids"]
        assert tok.decode(row["ids"], skip_special_tokens=True) == row["skipped"], row["ids"]


def test_flamingo_added_tokens_equal_the_release(case: tuple[str, dict[str, Any], Path]) -> None:
    """open_flamingo's ``<|endofchunk|>``, ``<image>``, ``<PAD>`` through radbench's own ``prepare_tokenizer``."""
    version, ref, folder = case
    tok = flamingo_convert.prepare_tokenizer("medflamingo", tokenizers.load_llama_tokenizer(FAMILY[version], folder))
    assert tok.convert_tokens_to_ids([flamingo.EOC, flamingo.IMAGE, flamingo.PAD]) == ref["flamingo_ids"]
    assert tok.pad_token_id == ref["flamingo_ids"][2] and len(tok) == ref["flamingo_ids"][2] + 1
    for row in ref["flamingo"]:
        ids = tok(row["text"])["input_ids"]
        assert (ids, tok.convert_ids_to_tokens(ids)) == (row["ids"], row["tokens"]), row["text"]
        assert (tok.decode(ids), tok.decode(ids, skip_special_tokens=True)) == (row["decoded"], row["skipped"])
    for row in ref["flamingo_decode"]:
        assert tok.decode(row["ids"]) == row["text"], row["ids"]
        assert tok.decode(row["ids"], skip_special_tokens=True) == row["skipped"], row["ids"]
    copy = pickle.loads(pickle.dumps(tok))
    assert [copy(r["text"])["input_ids"] for r in ref["flamingo"]] == [r["ids"] for r in ref["flamingo"]]


# ---------------------------------------------------------------------------------------------
# The adapters' own prompt paths
# ---------------------------------------------------------------------------------------------

IMAGE = ImageRef("x.png", root="/nonexistent")


def turn(question: str, answer: str | None = None) -> Turn:
    return Turn((Segment(image=IMAGE), Segment(text=question)), answer=answer)


@pytest.mark.parametrize("model", list(PREFIX))
def test_med_flamingo_prompt_ids_equal_the_authors_tokenizer(model: str, tmp_path: Path) -> None:
    """``medflamingo_prompt`` renders the demo's text; the adapter's tokenizer gives 4.30's ids for it."""
    ref = reference("4.30")["models"][model]["med_flamingo_prompts"]
    folder = spm_models.write_model(tmp_path, PREFIX[model], config='{"tokenizer_class": "LlamaTokenizer"}')
    tok = flamingo_convert.prepare_tokenizer(
        "medflamingo", flamingo_convert.load_tokenizer("medflamingo", folder, llama=True))
    shot = turn("Which side is the nodule on?", "left")
    for index, row in enumerate(ref):
        question = row["text"].rsplit("Question: ", 1)[1][: -len(" Answer:")]
        turns = (shot, turn(question)) if index % 2 else (turn(question),)
        prompt, refs = flamingo.medflamingo_prompt(Request("q", turns, task="vqa"))
        assert prompt == row["text"] and len(refs) == len(turns)
        assert tok(prompt)["input_ids"] == row["ids"]


@pytest.mark.parametrize("model", list(PREFIX))
def test_llava_med_prompt_ids_equal_the_authors_tokenizer(model: str, tmp_path: Path) -> None:
    """``render_prompt`` + ``tokenize_with_images`` equal ``tokenizer_image_token`` over 4.36's fast tokenizer."""
    ref = reference("4.36")["models"][model]["llava_prompts"]
    folder = spm_models.write_model(tmp_path, PREFIX[model], config='{"tokenizer_class": "LlamaTokenizer"}')
    tok = llava_med.prepare_tokenizer(tokenizers.load_llama_tokenizer("llava-med", folder))
    image = tok.convert_tokens_to_ids(llava_med.IMAGE_TOKEN)
    for row in ref:
        images = row["text"].count(llava_med.IMAGE_TOKEN)
        question = row["text"][len("[INST] ") + images * len("<image>\n"): -len(" [/INST]")]
        request = Request("q", (Turn(tuple(Segment(image=IMAGE) for _ in range(images)) + (Segment(text=question),)),))
        prompt = llava_med.render_prompt(request)
        assert prompt == row["text"]
        want = [i for x in row["ids"] for i in ([image] * 3 if x == -200 else [x])]
        assert llava_med.tokenize_with_images(tok, prompt, image, 3) == want


# ---------------------------------------------------------------------------------------------
# Where the converted tokenizer must agree with SentencePiece
# ---------------------------------------------------------------------------------------------

WORDS = st.lists(st.sampled_from([w for w in spm_models.WORDS]), min_size=1, max_size=8)
SEPARATORS = st.sampled_from([" ", "\n", "\t", ", ", ". ", "? ", ": ", "\n\n"])


@st.composite
def single_spaced(draw: st.DrawFn) -> str:
    """Words joined by separators holding at most one space: no run of spaces, no leading space."""
    words = draw(WORDS)
    return "".join(w + (draw(SEPARATORS) if i + 1 < len(words) else "") for i, w in enumerate(words))


@pytest.fixture(scope="module")
def prefixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spm_models.write_model(tmp_path_factory.mktemp("agree"), True)


@SETTINGS
@given(text=single_spaced(), version=st.sampled_from(list(FAMILY)))
def test_fast_equals_sentencepiece_on_single_spaced_words(prefixed: Path, text: str, version: str) -> None:
    """With the dummy prefix on (LLaMA's and Mistral's setting), text with no run of spaces, no leading
    space and no literal ``<s>``/``</s>``/``<unk>`` encodes to SentencePiece's ids in both releases, and
    decodes back to SentencePiece's text. (The converters ignore ``add_dummy_prefix: false``, 4.36 merges
    ``▁▁`` first, and both cut the control names out of the text: those are where they differ.)"""
    sp = spm.SentencePieceProcessor(model_file=str(prefixed / "tokenizer.model"))
    tok = tokenizers.load_llama_tokenizer(FAMILY[version], prefixed)
    ids = tok(text)["input_ids"]
    assert ids == [1] + sp.encode(text)
    assert tok.decode(ids, skip_special_tokens=True) == sp.decode(sp.encode(text)) == text


def test_a_decapoda_style_config_with_empty_names_still_uses_llamas_specials(tmp_path: Path) -> None:
    """decapoda's ``""`` names send transformers 4.30's fast tokenizer into infinite recursion; the
    authors' working folders named ``<s>``/``</s>``/``<unk>``, which the converter registers anyway."""
    folder = spm_models.write_model(tmp_path, True, config='{"bos_token": "", "eos_token": "", "unk_token": ""}')
    tok = tokenizers.load_llama_tokenizer("medflamingo", folder)
    assert (tok.bos_token_id, tok.eos_token_id, tok.unk_token_id) == (1, 2, 0)
    assert tok("a b")["input_ids"][0] == 1


def test_the_config_decides_bos_and_eos(tmp_path: Path) -> None:
    folder = spm_models.write_model(tmp_path, True, config='{"add_bos_token": false, "add_eos_token": true}')
    for family in FAMILY.values():
        ids = tokenizers.load_llama_tokenizer(family, folder)("the lung")["input_ids"]
        assert ids[0] != 1 and ids[-1] == 2
