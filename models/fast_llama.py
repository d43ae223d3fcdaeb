"""The fast ``LlamaTokenizerFast`` that transformers 4.30 / 4.36 built from a ``tokenizer.model``.

Med-Flamingo (open_flamingo 0.0.2) and LLaVA-Med (llava's ``builder.py``) load their LLaMA/Mistral
tokenizer with ``AutoTokenizer`` and no ``use_fast=False``, so they ran the *fast* tokenizer that
transformers converted from the SentencePiece model on the fly (their folders ship no
``tokenizer.json``). That conversion does not equal SentencePiece: its normaliser prefixes every
segment with ``▁`` (whatever ``add_dummy_prefix`` says), its BPE applies a merge list derived from the
piece scores (so runs of spaces and some words split differently), ``<s>``/``</s>``/``<unk>`` in the
text become the special tokens, and a run of byte pieces holding invalid UTF-8 decodes to one U+FFFD
per byte. And the merge list changed between releases: transformers 4.28.1-4.30.2 paired every two
pieces and kept pairs whose concatenation has a non-zero score, 4.31 onwards split every piece at
every position. :func:`build` rebuilds the ``tokenizers.Tokenizer`` each release produced, and
:class:`FastLlamaTokenizer` wraps it behind the interface of
:class:`radbench.models.spm.SentencePieceTokenizer` (what the adapters call), encoding and decoding
as transformers' ``PreTrainedTokenizerFast`` did: ``Tokenizer.encode``, the decoder over the ids' tokens,
no clean-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from radbench import safe_io
from radbench.models.spm import TokenizerCalls

SPIECE_UNDERLINE = "\u2581"
CONTROL_NAMES = ("<unk>", "<s>", "</s>")


@dataclass(frozen=True)
class Converter:
    """What differed between the ``LlamaConverter`` releases the authors ran.

    ``pair_merges``: 4.28.1-4.30.2's ``SentencePieceExtractor`` (every pair of pieces whose concatenation
    is a piece with a non-zero score, equal scores in (left id, right id) order); otherwise 4.31+'s
    (every split of every piece into two pieces, equal scores in (piece id, left id, right id) order).
    ``controls_normalized``: 4.28-4.30 registered ``<unk>``/``<s>``/``</s>`` as normalised added tokens
    (matched in the ``▁``-prefixed text), 4.31+ as not normalised (matched in the raw text).
    """

    version: str
    pair_merges: bool
    controls_normalized: bool


# open_flamingo 0.0.2 era: Med-Flamingo pins transformers at a main commit of mid-2023 with tokenizers
# 0.13.3; every release from 4.28.1 to 4.30.2 converts the same way (4.31.0 changed the merges).
TRANSFORMERS_4_30 = Converter("4.30.2", pair_merges=True, controls_normalized=True)
# LLaVA-Med v1.5's pinned transformers.
TRANSFORMERS_4_36 = Converter("4.36.2", pair_merges=False, controls_normalized=False)


def _pieces(proto: Any) -> list[tuple[str, float]]:
    """``LlamaConverter.vocab``: the first three pieces renamed to LLaMA's control names, score 0."""
    return [(name, 0.0) for name in CONTROL_NAMES] + [(p.piece, p.score) for p in proto.pieces[3:]]


def merges(proto: Any, converter: Converter) -> list[tuple[str, str]]:
    """The BPE merge list the release derived from the piece scores (highest score first).

    Both releases sorted the candidates by score, descending, with a stable sort, so ties keep the
    order in which the release enumerated them; that order is reproduced here as a sort key instead
    of the releases' quadratic loop.
    """
    ids = {p.piece: i for i, p in enumerate(proto.pieces)}  # the SentencePiece vocabulary
    scores = dict(_pieces(proto))
    order = {piece: i for i, piece in enumerate(scores)}
    found: list[tuple[float, int, int, int, str, str]] = []
    for piece, score in scores.items():
        if converter.pair_merges and not score:
            continue  # 4.30 kept a pair only if the joined piece's score was truthy
        for cut in range(1, len(piece)):
            left, right = piece[:cut], piece[cut:]
            if left in ids and right in ids:
                rank = 0 if converter.pair_merges else order[piece]
                found.append((-score, rank, ids[left], ids[right], left, right))
    found.sort(key=lambda item: item[:4])
    return [(left, right) for *_, left, right in found]


def build(model_proto: bytes, converter: Converter, *, add_bos: bool = True, add_eos: bool = False) -> Any:
    """The ``tokenizers.Tokenizer`` that ``converter``'s ``LlamaTokenizerFast`` held for this model."""
    from sentencepiece import sentencepiece_model_pb2
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, processors
    from tokenizers.models import BPE

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model_proto)
    if proto.trainer_spec.model_type != 2:
        raise ValueError("LlamaConverter converts BPE SentencePiece models only")
    vocab = {piece: i for i, (piece, _) in enumerate(_pieces(proto))}
    tokenizer = Tokenizer(BPE(vocab, merges(proto, converter), unk_token=proto.trainer_spec.unk_piece,
                              fuse_unk=True, byte_fallback=True))
    tokenizer.add_special_tokens([AddedToken(name, normalized=converter.controls_normalized, special=True)
                                  for name in CONTROL_NAMES])
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend(SPIECE_UNDERLINE),
                                                 normalizers.Replace(" ", SPIECE_UNDERLINE)])
    tokenizer.decoder = decoders.Sequence([decoders.Replace(SPIECE_UNDERLINE, " "), decoders.ByteFallback(),
                                           decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    # LlamaTokenizerFast.update_post_processor with the default names and the config's flags.
    single = " ".join([*(["<s>:0"] if add_bos else []), "$A:0", *(["</s>:0"] if add_eos else [])])
    pair = " ".join([single, *(["<s>:1"] if add_bos else []), "$B:1", *(["</s>:1"] if add_eos else [])])
    specials = [(name, vocab[name]) for name, on in (("<s>", add_bos), ("</s>", add_eos)) if on]
    tokenizer.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    return tokenizer


class FastLlamaTokenizer(TokenizerCalls):
    """A converted fast LLaMA tokenizer with the calls the adapters make (see ``spm.SentencePieceTokenizer``).

    Special tokens added later are ``tokenizers.AddedToken`` objects as transformers made them from the
    authors' plain strings (``special=True, normalized=False``, no stripping).
    """

    def __init__(self, backend: Any, converter: Converter) -> None:
        self.backend = backend
        self.converter = converter
        self.padding_side = "right"
        self.pad_token_id: int | None = None

    @classmethod
    def from_folder(cls, folder: Path, converter: Converter) -> "FastLlamaTokenizer":
        """``folder/tokenizer.model`` with the BOS/EOS flags of ``tokenizer_config.json`` (BOS on, EOS off)."""
        config: dict[str, Any] = {}
        config_file = folder / "tokenizer_config.json"
        if config_file.is_file():
            config = safe_io.read_json_object(config_file, "tokenizer")
        backend = build((folder / "tokenizer.model").read_bytes(), converter,
                        add_bos=bool(config.get("add_bos_token", True)),
                        add_eos=bool(config.get("add_eos_token", False)))
        return cls(backend, converter)

    # -- vocabulary -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.backend.get_vocab_size(with_added_tokens=True))

    def get_vocab(self) -> dict[str, int]:
        return dict(self.backend.get_vocab(with_added_tokens=True))

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        """An unknown token maps to ``<unk>``, as ``_convert_token_to_id_with_added_voc`` did."""
        if isinstance(tokens, str):
            index = self.backend.token_to_id(tokens)
            return self.unk_token_id if index is None else int(index)
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> Any:
        if isinstance(ids, int):
            return self._token(ids)
        special = self.all_special_ids if skip_special_tokens else set()
        return [self._token(int(i)) for i in ids if int(i) not in special]

    def _token(self, index: int) -> str | None:
        """An added token's content, else the model's piece (``None`` past the vocabulary).

        Not ``Tokenizer.id_to_token``: with a normaliser, tokenizers 0.2x returns a *normalised* added
        token's normalised form (``▁<s>`` for 4.30's ``<s>``); 0.13 returned its content.
        """
        added = self._added().get(index)
        return added.content if added is not None else self.backend.model.id_to_token(index)

    def _added(self) -> dict[int, Any]:
        return dict(self.backend.get_added_tokens_decoder())

    @property
    def all_special_ids(self) -> set[int]:
        """What ``skip_special_tokens`` drops: the added tokens marked special."""
        return {int(i) for i, token in self._added().items() if token.special}

    @property
    def unk_token_id(self) -> int | None:
        return self.backend.token_to_id("<unk>")

    @property
    def bos_token_id(self) -> int | None:
        return self.backend.token_to_id("<s>")

    @property
    def eos_token_id(self) -> int | None:
        return self.backend.token_to_id("</s>")

    @property
    def bos_token(self) -> str:
        return "<s>"

    @property
    def eos_token(self) -> str:
        return "</s>"

    @property
    def unk_token(self) -> str:
        return "<unk>"

    @property
    def pad_token(self) -> str | None:
        return None if self.pad_token_id is None else self.backend.id_to_token(self.pad_token_id)

    def add_special_tokens(self, tokens: Mapping[str, Any], replace_extra_special_tokens: bool = False) -> int:
        """Add ``extra_special_tokens``/``additional_special_tokens`` (a list) and ``pad_token``, in order.

        A plain string becomes ``AddedToken(special=True, normalized=False)``, what transformers 4.30 and
        4.36 made of the strings open_flamingo passed; an ``AddedToken`` keeps its own flags.
        """
        from tokenizers import AddedToken

        def as_token(value: Any) -> Any:
            return AddedToken(value, special=True, normalized=False) if isinstance(value, str) else value

        added = 0
        for key, value in tokens.items():
            if key in ("extra_special_tokens", "additional_special_tokens"):
                added += self.backend.add_special_tokens([as_token(t) for t in value])
            elif key == "pad_token":
                token = as_token(value)
                added += self.backend.add_special_tokens([token])
                self.pad_token_id = self.backend.token_to_id(token.content)
            else:
                raise ValueError(f"unsupported special-token key {key!r}")
        return int(added)

    # -- encoding and decoding --------------------------------------------------------------------

    def tokenize(self, text: str) -> list[str]:
        return list(self.backend.encode(text, add_special_tokens=False).tokens)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return list(self.backend.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Iterable[int] | Any, skip_special_tokens: bool = False) -> str:
        """``Tokenizer.decode``; LLaMA's fast tokenizer cleaned up no spaces."""
        values = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        return self._decode(values, self.all_special_ids if skip_special_tokens else set())

    def _decode(self, ids: list[int], skipped: set[int]) -> str:
        """What tokenizers 0.13-0.15's ``Tokenizer.decode`` did: tokens (specials skipped), then the decoder.

        Done here because tokenizers 0.2x neither skips a *normalised* special token (4.30's ``<s>``)
        nor writes it as its content once the tokenizer has a normaliser.
        """
        added = self._added()
        tokens = []
        for index in ids:
            if index in skipped:
                continue
            token = added[index].content if index in added else self.backend.model.id_to_token(index)
            if token is not None:
                tokens.append(token)
        return str(self.backend.decoder.decode(tokens))
