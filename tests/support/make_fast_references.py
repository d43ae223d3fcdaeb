"""Write what the authors' fast LLaMA tokenizers produce on the tiny models, with the real old transformers.

Med-Flamingo ran the ``LlamaTokenizerFast`` that a transformers 4.28.1-4.30.2 converted from
``tokenizer.model`` (tokenizers 0.13.3), LLaVA-Med the one transformers 4.36.2 converted (tokenizers
0.15.2). The test suite must not need those versions, so their outputs are stored in
``tests/data/fast_llama_<version>.json`` and ``tests/test_tokenizers_fast.py`` compares
``radbench.models.fast_llama`` with them. Regenerate (from the repository root, each in a virtual
environment holding only that release, its tokenizers, sentencepiece 0.2.3 and protobuf)::

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python PYTHONPATH=. \\
        /tmp/tf430/bin/python tests/support/make_fast_references.py tests/data/fast_llama_4.30.json
    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python PYTHONPATH=. /tmp/tf436/bin/python tests/support/make_fast_references.py tests/data/fast_llama_4.36.json

(``pip install transformers==4.30.2 tokenizers==0.13.3 sentencepiece==0.2.3 protobuf`` and
``transformers==4.36.2 tokenizers==0.15.2 ...``). The tiny models are trained here by
``tests/support/spm_models.py``; their SHA-256 is stored so the test can check it trains the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.support import spm_models

EOC, IMAGE, PAD = "<|endofchunk|>", "<image>", "<PAD>"
LLAVA_IMAGE_INDEX = -200  # llava.constants.IMAGE_TOKEN_INDEX
FRAGMENTS = (*spm_models.WORDS, " ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", " \n ", "\t ", "0", "7", "12",
             "2048", "3.5", "é", "中", "Ω", "😀", "\x15", "ΈΑ", "\u00ad", "?", ")", ":", "-", "'", "▁", "<s>", "</s>",
             "<unk>", "<s", "s>", "x", "Z")
FIXED = ["", " ", "  ", "\n", "a  b", " lead", "a    b", "trail  ", "  two leading", "tab\there", "x\n\n y",
         "Question: is there?)  Answer:", "digits 12345", "é中文Ω", "\u0a00\u0b00 rare", "<s>uns", "a <s> b", "end</s>",
         "<unk>x", "x<s>", "<s>", "</s></s>", " <s> ", "😀😀", "a\u00adb"]
MED_FLAMINGO_SYSTEM = ("You are a helpful medical assistant. You are being provided with images, a question about the "
                       "image and an answer. Follow the examples and answer the last question. ")
QUESTIONS = ("Is there a pleural effusion?", "Which side is the nodule on?", "What  is  shown  here?",
             " Is the heart normal? ", "Left or right?\nAnswer briefly.")


def plain_strings(count: int = 300) -> list[str]:
    rng = random.Random(14)
    out = list(FIXED)
    while len(out) < count:
        if rng.random() < 0.2:
            out.append("".join(chr(rng.choice((rng.randint(32, 126), rng.randint(0xA0, 0x2FF), rng.randint(0x4E00, 0x4E80),
                                                rng.randint(0x1F600, 0x1F640), rng.randint(0, 31))))
                               for _ in range(rng.randint(1, 12))))
        else:
            out.append("".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 10))))
    return out


def special_strings(count: int = 120) -> list[str]:
    rng = random.Random(15)
    pieces = (*FRAGMENTS, EOC, IMAGE, PAD, "<image", "<|endofchunk|", " " + IMAGE + " ", EOC + "\n")
    return [f"a {IMAGE} b", f"a{EOC}b", f"x {EOC} y", f" {PAD} z"] + [
        "".join(rng.choice(pieces) for _ in range(rng.randint(1, 8))) for _ in range(count)]


def med_flamingo_prompts() -> list[str]:
    """``scripts/demo.py``'s format: system sentence, answered ``<image>Question: q Answer: a.<|endofchunk|>`` shots."""
    shot = f"{IMAGE}Question: {QUESTIONS[1]} Answer: left.{EOC}"
    return [MED_FLAMINGO_SYSTEM + (shot if i % 2 else "") + f"{IMAGE}Question: {q} Answer:" for i, q in enumerate(QUESTIONS)]


def llava_prompts() -> list[str]:
    """``[INST] <image>\\n{question} [/INST]`` (conv_mistral_instruct), one or two images."""
    return ["[INST] " + f"{IMAGE}\n" * (1 + i % 2) + f"{q.strip()} [/INST]" for i, q in enumerate(QUESTIONS)]


def tokenizer_image_token(tokenizer, prompt: str) -> list[int]:  # type: ignore[no-untyped-def]
    """llava.mm_utils.tokenizer_image_token re-derived: chunks with BOS each, one BOS kept, -200 between."""
    chunks = [tokenizer(chunk).input_ids for chunk in prompt.split(IMAGE)]
    ids: list[int] = []
    offset = 0
    if chunks and chunks[0] and chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        ids.append(chunks[0][0])
    for index, chunk in enumerate(chunks):
        if index:
            ids.append(LLAVA_IMAGE_INDEX)
        ids.extend(chunk[offset:])
    return ids


def decode_cases(tokenizer, size: int, rng: random.Random) -> list[dict]:  # type: ignore[no-untyped-def]
    byte = {b: tokenizer.convert_tokens_to_ids(f"<0x{b:02X}>") for b in range(256)}
    runs = [[0xCE, 0xAD, 0xC4, 0x15], [0xC4], [0xE4, 0xB8], [0xF0, 0x9F, 0x98], [0xFF, 0x41], [0xE4, 0xB8, 0xAD, 0xE4]]
    cases = [[byte[b] for b in run] for run in runs]
    cases += [[1, byte[0x61], 2, byte[0xC3], byte[0xA9]], [3, 1, 3], [0, 1, 2]]
    cases += [[rng.randrange(size) for _ in range(rng.randint(1, 14))] for _ in range(120)]
    return [{"ids": ids, "text": tokenizer.decode(ids), "skipped": tokenizer.decode(ids, skip_special_tokens=True)}
            for ids in cases]


def encode_cases(tokenizer, strings: list[str]) -> list[dict]:  # type: ignore[no-untyped-def]
    out = []
    for text in strings:
        ids = tokenizer(text).input_ids
        out.append({"text": text, "ids": ids, "tokens": tokenizer.convert_ids_to_tokens(ids),
                    "decoded": tokenizer.decode(ids), "skipped": tokenizer.decode(ids, skip_special_tokens=True)})
    return out


def write_model_in_child(folder: Path, prefix: bool) -> bytes:
    """Train in a child process: sentencepiece's and transformers 4.36's ``sentencepiece_model.proto`` clash."""
    code = ("import sys; from pathlib import Path; from tests.support import spm_models; "
            "spm_models.write_model(Path(sys.argv[1]), sys.argv[2] == '1', config='{\"tokenizer_class\": \"LlamaTokenizer\"}')")
    subprocess.run([sys.executable, "-c", code, str(folder), "1" if prefix else "0"], check=True)
    return (folder / "tokenizer.model").read_bytes()


def main(out: Path) -> None:
    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    result: dict = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__, "models": {}}
    for prefix in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            model = write_model_in_child(folder, prefix)
            tok = AutoTokenizer.from_pretrained(str(folder))
            assert type(tok).__name__ == "LlamaTokenizerFast", type(tok)
            entry: dict = {"sha256": hashlib.sha256(model).hexdigest(), "plain": encode_cases(tok, plain_strings()),
                           "decode": decode_cases(tok, len(tok), random.Random(16))}
            entry["llava_prompts"] = [{"text": p, "ids": tokenizer_image_token(tok, p)} for p in llava_prompts()]
            # open_flamingo 0.0.2 create_model_and_transforms
            tok.add_special_tokens({"additional_special_tokens": [EOC, IMAGE]})
            if tok.pad_token is None:
                tok.add_special_tokens({"pad_token": PAD})
            entry["flamingo_ids"] = tok.convert_tokens_to_ids([EOC, IMAGE, PAD])
            entry["flamingo"] = encode_cases(tok, special_strings())
            entry["flamingo_decode"] = decode_cases(tok, len(tok), random.Random(17))
            entry["med_flamingo_prompts"] = encode_cases(tok, med_flamingo_prompts())
        result["models"]["dummy-prefix" if prefix else "no-dummy-prefix"] = entry
    out.write_text(json.dumps(result, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {out} (transformers {transformers.__version__}, tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
