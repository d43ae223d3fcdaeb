"""Tiny SentencePiece models with the released LLaMA/Mistral normaliser settings, trained offline.

The released LLaMA-1 ``tokenizer.model`` (RadFM's ``Language_files``, PMC-LLaMA's, decapoda's) has
``normalizer_spec {name: identity, add_dummy_prefix: true, remove_extra_whitespaces: false}`` and
``trainer_spec {model_type: BPE, byte_fallback: true, split_digits: true,
allow_whitespace_only_pieces: true, unk 0, bos 1, eos 2, pad -1}``, and scores its whitespace-only
pieces (``▁▁`` ...) -1e9. The models here use the same settings on a small generated corpus, so SentencePiece's own behaviour on runs of spaces, leading
spaces, digits and byte fallback is what the tokenizers under test must reproduce. Each model is
trained once per process (tens of milliseconds).
"""

from __future__ import annotations

import functools
import io
import itertools
from pathlib import Path

WORDS = ("the", "lung", "lungs", "heart", "is", "there", "a", "pleural", "effusion", "Question", "Answer",
         "image", "left", "right", "no", "yes", "normal", "findings", "CT", "MRI", "X-ray", "nodule", "brain")
SEPARATORS = (" ", " ", " ", "  ", "   ", "\n", "\n\n", "\t", " \t ", ": ", "? ", ", ", ". ")
EXTRA = ("é", "ü", "ß", "中", "文", "Ω", "→", "½")


def corpus(lines: int = 400) -> list[str]:
    """Deterministic lines mixing words, runs of whitespace, digits and some non-ASCII letters."""
    out = []
    words, seps, extra = itertools.cycle(WORDS), itertools.cycle(SEPARATORS), itertools.cycle(EXTRA)
    for i in range(lines):
        parts = []
        for j in range(3 + i % 7):
            token = next(words)
            if (i + j) % 5 == 0:
                token += str(i * 7 + j)
            if (i + j) % 11 == 0:
                token += next(extra)
            parts.append(token + next(seps))
        out.append(("  " if i % 13 == 0 else "") + "".join(parts))
    return out


@functools.lru_cache(maxsize=None)
def llama_style_model(add_dummy_prefix: bool = True, vocab_size: int = 400) -> bytes:
    """A serialised ``tokenizer.model`` with LLaMA-1's settings (``add_dummy_prefix`` as given)."""
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus()), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        normalization_rule_name="identity", add_dummy_prefix=add_dummy_prefix, remove_extra_whitespaces=False,
        split_digits=True, allow_whitespace_only_pieces=True, byte_fallback=True, character_coverage=1.0,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, num_threads=1, minloglevel=2,
    )
    return _demote_whitespace_pieces(buf.getvalue())


def _demote_whitespace_pieces(model: bytes) -> bytes:
    """Give ``▁▁``, ``▁▁▁``... the score -1e9, as in LLaMA-1's released model.

    There they are merged last, so ``"a  b"`` encodes as ``▁a ▁ ▁b``, the split transformers 5.x's
    ``LlamaTokenizer`` does not reproduce (it gives ``▁a ▁▁ b``).
    """
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    for piece in proto.pieces:
        if len(piece.piece) > 1 and set(piece.piece) == {"\u2581"}:
            piece.score = -1e9
    return proto.SerializeToString()


def write_model(directory: Path, add_dummy_prefix: bool = True, config: str | None = None) -> Path:
    """``directory/tokenizer.model`` (and ``tokenizer_config.json`` when ``config`` is given)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tokenizer.model").write_bytes(llama_style_model(add_dummy_prefix))
    if config is not None:
        (directory / "tokenizer_config.json").write_text(config, encoding="utf-8")
    return directory
