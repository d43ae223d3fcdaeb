"""SentencePiece tokenization exactly as the authors' slow ``LlamaTokenizer`` ran it.

RadFM (transformers 4.28) and MedVInT (PMC-LLaMA's 4.28-era stack) tokenized through the *slow*
``LlamaTokenizer`` (Med-Flamingo and LLaVA-Med ran the fast one: :mod:`radbench.models.fast_llama`): the text is cut at the added tokens, each
remaining chunk goes through ``sentencepiece`` on its own (so each chunk gets SentencePiece's dummy-prefix
``▁``), and the ids of the chunks and of the added tokens are concatenated after one BOS. transformers
5.x's ``LlamaTokenizer`` is built on ``tokenizers`` instead and splits differently (a run of spaces
``"a  b"`` gives ``▁a ▁▁ b`` where SentencePiece gives ``▁a ▁ ▁b``; a leading space is dropped; a run of
byte-fallback pieces holding an invalid UTF-8 byte decodes to all U+FFFD where SentencePiece decodes
byte by byte). :class:`SentencePieceTokenizer` therefore calls ``sentencepiece`` itself and implements
the slow tokenizer's splitting around added tokens, behind the subset of the transformers tokenizer
interface the adapters use (``__call__``, ``decode``, ``batch_decode``, ``convert_tokens_to_ids``,
``convert_ids_to_tokens``, ``add_special_tokens``, the special-token ids, ``len``).

The released ``tokenizer.model`` decides normalisation (LLaMA-1's: identity normaliser, dummy prefix on,
extra whitespace kept), because SentencePiece reads it from the file's ``normalizer_spec``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from radbench import safe_io

SPIECE_UNDERLINE = "▁"


@dataclass(frozen=True)
class AddedTokenSpec:
    """An added token as the slow tokenizer saw it.

    ``lstrip``/``rstrip``: the whitespace on the token's left/right side is removed from the
    neighbouring text before SentencePiece sees it. The slow tokenizer stripped both sides for
    tokens added as plain strings (RadFM's, Med-Flamingo's) and neither side for LLaMA's own
    ``<s>``/``</s>``/``<unk>`` (wrapped as ``AddedToken(lstrip=False, rstrip=False)``).
    """

    content: str
    lstrip: bool
    rstrip: bool
    special: bool


class TokenizerCalls:
    """The transformers-style calls the adapters make, written once over ``encode`` and ``decode``
    (:class:`SentencePieceTokenizer` here, ``models/fast_llama.py``'s ``FastLlamaTokenizer``)."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int] | Any, skip_special_tokens: bool = False) -> str:
        raise NotImplementedError

    def __call__(self, text: str | Sequence[str], add_special_tokens: bool = True) -> Any:
        """``{"input_ids", "attention_mask"}`` like a transformers tokenizer (lists, no tensors)."""
        from transformers import BatchEncoding

        if isinstance(text, str):
            ids: Any = self.encode(text, add_special_tokens)
            mask: Any = [1] * len(ids)
        else:
            ids = [self.encode(t, add_special_tokens) for t in text]
            mask = [[1] * len(i) for i in ids]
        return BatchEncoding({"input_ids": ids, "attention_mask": mask})

    def batch_decode(self, sequences: Iterable[Any], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(s, skip_special_tokens=skip_special_tokens) for s in sequences]


class SentencePieceTokenizer(TokenizerCalls):
    """A ``tokenizer.model`` plus added tokens, encoding and decoding as the slow ``LlamaTokenizer``.

    ``control_tokens`` are the base vocabulary's tokens (``<s>`` ...) that the authors' tokenizer also
    cut out of the text (it did so for every special token named in its config; RadFM's config names
    ``""``, which cuts nothing).
    """

    def __init__(self, model_proto: bytes, *, add_bos: bool = True, add_eos: bool = False,
                 control_tokens: Iterable[str] = ()) -> None:
        import sentencepiece as spm

        self._proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.add_bos, self.add_eos = add_bos, add_eos
        self.padding_side = "right"
        self._base = self.sp.get_piece_size()
        self.unk_token_id: int | None = self._control_id(self.sp.unk_id())
        self.bos_token_id: int | None = self._control_id(self.sp.bos_id())
        self.eos_token_id: int | None = self._control_id(self.sp.eos_id())
        self.pad_token_id: int | None = self._control_id(self.sp.pad_id())
        self._added: dict[str, int] = {}
        self._added_by_id: dict[int, AddedTokenSpec] = {}
        self._no_split: dict[str, AddedTokenSpec] = {}
        for token in control_tokens:
            if token:  # the slow tokenizer's trie skipped empty names
                self._no_split[token] = AddedTokenSpec(token, lstrip=False, rstrip=False, special=True)
        self._splitter: re.Pattern[str] | None = None
        self._compile()

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, folder: Path) -> "SentencePieceTokenizer":
        """``folder/tokenizer.model`` with the BOS/EOS flags and special-token names of its config.

        The authors' tokenizers read ``tokenizer_config.json`` (defaults: BOS on, EOS off,
        ``<unk>``/``<s>``/``</s>``); its empty strings (RadFM's) name no token to cut out.
        """
        config: dict[str, Any] = {}
        config_file = folder / "tokenizer_config.json"
        if config_file.is_file():
            config = safe_io.read_json_object(config_file, "tokenizer")
        names = [_token_content(config.get(key, default))
                 for key, default in (("unk_token", "<unk>"), ("bos_token", "<s>"), ("eos_token", "</s>"))]
        return cls((folder / "tokenizer.model").read_bytes(), add_bos=bool(config.get("add_bos_token", True)),
                   add_eos=bool(config.get("add_eos_token", False)), control_tokens=names)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("sp")
        state.pop("_splitter")
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        import sentencepiece as spm

        self.__dict__.update(state)
        self.sp = spm.SentencePieceProcessor(model_proto=self._proto)
        self._compile()

    def _is_piece(self, token: str) -> bool:
        unk = self.sp.unk_id()
        return self.sp.piece_to_id(token) != unk or (unk >= 0 and token == self.sp.id_to_piece(unk))

    def _control_id(self, value: int) -> int | None:
        return None if value < 0 else value

    def _compile(self) -> None:
        # Leftmost match, longest token first: what the slow tokenizer's trie split does.
        tokens = sorted(self._no_split, key=len, reverse=True)
        self._splitter = re.compile("|".join(map(re.escape, tokens))) if tokens else None

    # -- vocabulary -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._base + len(self._added)

    def id_to_piece(self, index: int) -> str:
        return self.sp.id_to_piece(index)

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp.id_to_piece(i): i for i in range(self._base)}
        vocab.update(self._added)
        return vocab

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        """Added tokens first, then SentencePiece's pieces (an unknown piece maps to ``<unk>``)."""
        if isinstance(tokens, str):
            return self._added[tokens] if tokens in self._added else self.sp.piece_to_id(tokens)
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int], skip_special_tokens: bool = False) -> Any:
        if isinstance(ids, int):
            return self._added_by_id[ids].content if ids in self._added_by_id else self.sp.id_to_piece(ids)
        special = self.all_special_ids if skip_special_tokens else set()
        return [self.convert_ids_to_tokens(int(i)) for i in ids if int(i) not in special]

    @property
    def all_special_ids(self) -> set[int]:
        """What ``skip_special_tokens`` drops: BOS/EOS/UNK/PAD and the added special tokens."""
        ids = {i for i in (self.bos_token_id, self.eos_token_id, self.unk_token_id, self.pad_token_id)
               if i is not None}
        return ids | {i for i, spec in self._added_by_id.items() if spec.special}

    def _token_name(self, index: int | None) -> str | None:
        return None if index is None else self.convert_ids_to_tokens(index)

    @property
    def bos_token(self) -> str | None:
        return self._token_name(self.bos_token_id)

    @property
    def eos_token(self) -> str | None:
        return self._token_name(self.eos_token_id)

    @property
    def unk_token(self) -> str | None:
        return self._token_name(self.unk_token_id)

    @property
    def pad_token(self) -> str | None:
        return self._token_name(self.pad_token_id)

    @pad_token.setter
    def pad_token(self, token: str) -> None:
        self.pad_token_id = self.convert_tokens_to_ids(token)

    def add_special_tokens(self, tokens: Mapping[str, Any], replace_extra_special_tokens: bool = False) -> int:
        """Add tokens after the base vocabulary, in order; return how many were new.

        Accepts what the adapters pass: ``extra_special_tokens``/``additional_special_tokens`` (a list)
        and ``pad_token``, each a string (the slow tokenizer stripped whitespace on both sides of those)
        or a ``tokenizers.AddedToken`` (its ``lstrip``/``rstrip`` are kept).
        """
        added = 0
        for key, value in tokens.items():
            if key in ("extra_special_tokens", "additional_special_tokens"):
                for token in value:
                    added += self._add(token)
            elif key == "pad_token":
                added += self._add(value)
                self.pad_token_id = self.convert_tokens_to_ids(_token_content(value))
            else:
                raise ValueError(f"unsupported special-token key {key!r}")
        self._compile()
        return added

    def _add(self, token: Any) -> int:
        content = _token_content(token)
        if isinstance(token, str):
            spec = AddedTokenSpec(content, lstrip=True, rstrip=True, special=True)
        else:
            spec = AddedTokenSpec(content, lstrip=bool(token.lstrip), rstrip=bool(token.rstrip),
                                  special=bool(getattr(token, "special", True)))
        if not content:
            return 0
        self._no_split[content] = spec
        if content in self._added or self._is_piece(content):
            return 0  # already a token: a base piece keeps its id, as in the slow tokenizer
        index = len(self)
        self._added[content] = index
        self._added_by_id[index] = spec
        return 1

    # -- encoding ---------------------------------------------------------------------------------

    def split(self, text: str) -> list[str]:
        """The text cut at the added tokens, neighbours stripped as each token asks, empty chunks dropped."""
        if self._splitter is None:
            return [text] if text else []
        parts: list[str] = []
        start = 0
        for match in self._splitter.finditer(text):
            if match.start() > start:
                parts.append(text[start:match.start()])
            parts.append(match.group())
            start = match.end()
        if start < len(text):
            parts.append(text[start:])
        for i, part in enumerate(parts):
            spec = self._no_split.get(part)
            if spec is None:
                continue
            if spec.rstrip and i + 1 < len(parts) and parts[i + 1]:
                parts[i + 1] = parts[i + 1].lstrip()
            if spec.lstrip and i > 0 and parts[i - 1]:
                parts[i - 1] = parts[i - 1].rstrip()
        return [p for p in parts if p]

    def tokenize(self, text: str) -> list[str]:
        """Pieces (added tokens as their text), without BOS/EOS."""
        return self.convert_ids_to_tokens(self.encode(text, add_special_tokens=False))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids: list[int] = []
        for part in self.split(text):
            if part in self._no_split:
                ids.append(self.convert_tokens_to_ids(part))
            else:
                ids.extend(self.sp.encode(part))
        if add_special_tokens:
            if self.add_bos and self.bos_token_id is not None:
                ids.insert(0, self.bos_token_id)
            if self.add_eos and self.eos_token_id is not None:
                ids.append(self.eos_token_id)
        return ids

    # -- decoding ---------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int] | Any, skip_special_tokens: bool = False) -> str:
        """SentencePiece's decode of each run of base pieces; added tokens as their text.

        As the slow tokenizer: ``skip_special_tokens`` drops BOS/EOS/UNK/PAD and the added special
        tokens first, so the rest is one SentencePiece run (byte-fallback pieces decode byte by
        byte); kept added tokens are joined to the text around them with single spaces and kept
        control tokens are written as their piece text.
        """
        values = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        special = self.all_special_ids if skip_special_tokens else set()
        texts: list[str] = []
        run: list[int] = []
        for index in values:
            if index in special:
                continue
            if index in self._added_by_id:
                if run:
                    texts.append(self._decode_run(run))
                    run = []
                texts.append(self._added_by_id[index].content)
            else:
                run.append(index)
        if run:
            texts.append(self._decode_run(run))
        return " ".join(texts)

    def _decode_run(self, run: list[int]) -> str:
        """One run of base ids; control pieces (``<s>``...) are not SentencePiece text, so written out."""
        out, pending, previous_control = "", [], False
        for position, index in enumerate(run):
            if self.sp.is_control(index) or self.sp.is_unknown(index):
                if not previous_control and position:
                    out += " "
                out += self.sp.decode(pending) + self.sp.id_to_piece(index)
                pending, previous_control = [], True
            else:
                pending.append(index)
                previous_control = False
        return out + self.sp.decode(pending)


def _token_content(token: Any) -> str:
    """A token given as a string, a ``tokenizers.AddedToken`` or a saved ``{"content": ...}`` dict."""
    if token is None:
        return ""
    if isinstance(token, str):
        return token
    if isinstance(token, dict):
        return str(token.get("content", ""))
    return str(token.content)
