"""Offline building blocks for ``preset=tiny-random``: a real SentencePiece tokenizer and tiny configs.

No weights can be downloaded here, so every adapter can build its exact architecture at toy sizes
with a seeded random init. The tokenizer is a genuine LLaMA-style ``tokenizer.model`` trained in
process (24 ms) and loaded through the same :func:`radbench.models.tokenizers.load_llama_tokenizer` path
the released checkpoints use, so the legacy-tokenization and special-token code is exercised for
real. Tiny models generate nonsense; they test plumbing, shapes and invariances, not quality.
"""

from __future__ import annotations

import io
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from radbench.models.tokenizers import load_llama_tokenizer
from radbench.types import stable_hash

TINY_SEED = 0
TINY_VOCAB = 320  # >= ~300 is needed with byte_fallback (256 byte pieces + 3 specials)

# Enough radiology-flavoured text that common words become pieces; byte fallback covers the rest.
TINY_TEXTS = (
    "Is there a pleural effusion? yes",
    "On which side is the pleural effusion? left",
    "Is the heart enlarged? no",
    "How many lung nodules are there? one two three",
    "Which lung contains the largest nodule? right",
    "Question: What is the structure in the middle of the brain? Answer: pons.",
    "Can you identify any visible signs of cardiomegaly in the image?",
    "Please write a radiology report for this chest X-ray. Findings: no acute process. Impression: normal.",
    "What modality is used to take this image? CT MRI X-ray ultrasound",
    "You are a helpful medical assistant. Follow the examples and answer the last question.",
    "The lungs are clear. There is no pneumothorax. The cardiomediastinal silhouette is normal.",
    "What disease can be diagnosed from these radiological images and what features are observed?",
)


def train_sentencepiece(directory: Path, vocab_size: int = TINY_VOCAB) -> Path:
    """Train a LLaMA-style BPE ``tokenizer.model`` (unk=0, bos=1, eos=2, byte fallback) into ``directory``.

    Single-threaded so the same texts always give the same model, hence the same token ids.
    """
    import sentencepiece as spm

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TINY_TEXTS * 4), model_writer=buf, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2,
    )
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokenizer.model"
    path.write_bytes(buf.getvalue())
    return path


def tiny_llama_tokenizer(model: str, vocab_size: int = TINY_VOCAB) -> Any:
    """A fresh LLaMA tokenizer (``len == vocab_size``) loaded through the released-weights path."""
    with tempfile.TemporaryDirectory(prefix="radbench-tiny-tok-") as tmp:
        train_sentencepiece(Path(tmp), vocab_size)
        return load_llama_tokenizer(model, Path(tmp))


def tiny_bpe_tokenizer(vocab_size: int = 300) -> Any:
    """A byte-level BPE fast tokenizer without a pad token, like GPT-NeoX's (MPT, RedPajama)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(TINY_TEXTS * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")


def tiny_llama_config(vocab_size: int, **overrides: Any) -> Any:
    """A 4-layer, 64-wide LLaMA config (untied embeddings, as LLaMA-1); ``overrides`` win."""
    from transformers import LlamaConfig

    values: dict[str, Any] = dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=1024, rms_norm_eps=1e-6,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False,
    )
    values.update(overrides)
    return LlamaConfig(**values)


def tiny_clip_vision_config(**overrides: Any) -> Any:
    """A 2-layer CLIP ViT on 28x28 inputs with patch 14 (4 patch tokens + CLS), quick_gelu as OpenAI's."""
    from transformers import CLIPVisionConfig

    values: dict[str, Any] = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
        patch_size=14, projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )
    values.update(overrides)
    return CLIPVisionConfig(**values)


def tiny_fingerprint(model: str, config: dict[str, Any], seed: int = TINY_SEED) -> str:
    """The identity of a tiny-random model: its architecture config, seed and tokenizer corpus."""
    return "tiny-" + stable_hash([model, config, seed, TINY_TEXTS, TINY_VOCAB])[:24]


@contextmanager
def seeded(seed: int = TINY_SEED) -> Iterator[None]:
    """Seed torch's CPU generator for a block without disturbing the caller's random state."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield
