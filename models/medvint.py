"""MedVInT-TD (PMC-CLIP ResNet-50 trunk + 32-query transformer decoder + PMC-LLaMA with LoRA): ``medvint``.

The released ``xmcmic/MedVInT-TD`` checkpoints (``VQA_lora_PMC_LLaMA_PMCCLIP/{choice,blank}/checkpoint-*/
pytorch_model.bin``) are HF-Trainer state dicts of the authors' ``QA_model``: every weight, fp32,
LoRA unmerged. radbench rebuilds ``QA_model`` with the same module names, so
the keys load directly, and merges the LoRA pairs at load time (``W += alpha/r · B @ A``, alpha 32,
r 8), so no ``peft`` is needed:

* ``vision_model.{0..12}``: ``ModifiedResNet`` cut before ``layer4`` (``nn.Sequential(children[:-2])``):
  the 3-conv stem, then ``layer1..layer3``; 1024 channels at stride 16, so a 512 px image gives
  1024 visual tokens.
* ``query_embed`` (32 queries) and ``decoder``: DETR's pre-norm ``TransformerDecoder``, 12 layers,
  8 heads (``heads=``), then ``fc_l1 -> ReLU -> fc_l2`` to the LM width: 32 visual embeddings.
* ``llamacasual.base_model.model.*``: the LLaMA-7B, built from the sizes of its own weights (or the
  ``config.json`` beside the tokenizer); peft 0.2/0.3 key names (``q_proj.lora_A.weight``) and the
  newer ones (``q_proj.base_layer.weight``, ``lora_A.default.weight``) are both accepted.

The authors' inference (``test.py``, ``test_VQA_RAD.py``, ``Dataset/PMC_QA_Dataset.py``):

* Image: RGB, ``Resize((512, 512), BICUBIC)`` (aspect not kept), ``ToTensor``, ImageNet mean/std
  (radbench's ``medvint-512`` preprocessing). 3D studies: the middle axial slice (MedVInT is
  2D-only); ``slices=even:K`` or ``all`` gives one visual prefix per slice.
* The 32 visual embeddings come *before* BOS: ``[visual, <s>, prompt]``; no image token exists.
* Open questions: ``"Question: {q}The Answer is:"``, greedy, 50 new tokens by default. The model
  was trained to end answers with id 1 (the tokenizer's ``eos_token_id`` was set to 1), so both 1
  and 2 stop generation.
* Questions with answer options: ``"Question: {q}Choices: A:{o1} B:{o2}…The Answer is:"`` and one
  forward pass; the answer is read from the next-token logits of the option letters, and the
  option's text is returned. The authors instead took the last character of the unrestricted argmax
  and matched it to the options with ``difflib``; restricting to the letters gives the same letter
  whenever theirs was a letter, and never an unparseable answer. ``mode=open`` generates instead
  (the authors' VQA-RAD/SLAKE protocol for closed questions with the ``blank`` checkpoint).

``protocol=authors`` follows the authors' scripts instead: open questions stop only at the base
LM's own EOS (``generate`` reads it from the LLaMA folder's ``generation_config.json``, else its
``config.json``; ``tokenizer_path`` must hold one), and options are chosen as ``test.py`` does:
one forward pass, the argmax at *every* position decoded with special tokens skipped, its last
character matched with ``difflib`` against the lettered options ``" A:{option}"`` (the first
highest ratio above 0 wins; no match leaves the character itself as the answer).

Not the authors' setup: several images give one 32-token prefix each, in order; a request without
images has no prefix (the authors' ``no_image`` ablation); exemplar turns are ignored (MedVInT has
no few-shot format: one visual prefix, one question).
"""

from __future__ import annotations

import copy
import difflib
import re
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from radbench import safe_io
from radbench import images
from radbench.errors import SampleError, UsageError
from radbench.models import decoding, loading, tiny
from radbench.models.args import AUTHORS, CheckpointArgs, find_in, require_file
from radbench.models.hub_args import hub_path
from radbench.models.checkpoint import Build, CheckpointAdapter
from radbench.models.tokenizers import load_llama_tokenizer
from radbench.types import Request

DEFAULT_MAX_NEW_TOKENS = 50  # generate_long_sentence
EOS_IDS = (1, 2)  # trained with eos_token_id=1 appended; 2 is LLaMA's own
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
LM_PREFIX = "llamacasual.base_model.model."
# Saved by transformers 4.28 as buffers; recomputed by today's LlamaRotaryEmbedding.
STALE_KEYS = (r".*rotary_emb\.inv_freq$",)


# -- the architecture, with the authors' module names ------------------------------------------------


@dataclass(frozen=True)
class MedVInTConfig:
    """Sizes of every part; :meth:`released` is the checkpoint's, :meth:`tiny` the test preset's."""

    resnet_layers: tuple[int, ...] = (3, 4, 6)  # layer4 is cut off
    resnet_width: int = 64
    image_size: int = 512
    queries: int = 32
    decoder_layers: int = 12
    decoder_heads: int = 8
    decoder_ff: int = 1024
    vocab_size: int = 32000
    hidden_size: int = 4096
    intermediate_size: int = 11008
    num_hidden_layers: int = 32
    num_attention_heads: int = 32
    rms_norm_eps: float = 1e-6

    @property
    def features(self) -> int:
        """Channels out of ``layer3`` (1024 for the released ResNet-50 width 64)."""
        return self.resnet_width * 16

    @classmethod
    def tiny(cls, vocab_size: int) -> "MedVInTConfig":
        return cls(resnet_layers=(1, 1, 1), resnet_width=8, image_size=64, queries=4, decoder_layers=1,
                   decoder_heads=2, decoder_ff=32, vocab_size=vocab_size, hidden_size=64, intermediate_size=128,
                   num_hidden_layers=2, num_attention_heads=4)

    def lm_config(self) -> Any:
        from transformers import LlamaConfig

        return LlamaConfig(vocab_size=self.vocab_size, hidden_size=self.hidden_size,
                           intermediate_size=self.intermediate_size, num_hidden_layers=self.num_hidden_layers,
                           num_attention_heads=self.num_attention_heads, num_key_value_heads=self.num_attention_heads,
                           rms_norm_eps=self.rms_norm_eps, max_position_embeddings=2048, bos_token_id=1,
                           eos_token_id=2, pad_token_id=0, tie_word_embeddings=False)


class Bottleneck(nn.Module):
    """PMC-CLIP's anti-aliased bottleneck (an avgpool before strided convolutions)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu3 = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride > 1 or inplanes != planes * self.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        identity = self.downsample(x) if self.downsample is not None else x
        return self.relu3(out + identity)


def resnet_trunk(layers: Sequence[int], width: int) -> nn.Sequential:
    """``ModifiedResNet`` children up to ``layer3``, as ``nn.Sequential(*children[:-2])`` numbers them."""
    stem = [
        nn.Conv2d(3, width // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True),
        nn.Conv2d(width // 2, width // 2, 3, padding=1, bias=False), nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True),
        nn.Conv2d(width // 2, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
        nn.AvgPool2d(2),
    ]
    blocks: list[nn.Module] = []
    inplanes = width
    for index, (planes, count) in enumerate(zip((width, width * 2, width * 4), layers)):
        stage = [Bottleneck(inplanes, planes, 1 if index == 0 else 2)]
        inplanes = planes * Bottleneck.expansion
        stage += [Bottleneck(inplanes, planes) for _ in range(1, count)]
        blocks.append(nn.Sequential(*stage))
    return nn.Sequential(*stem, *blocks)


class DecoderLayer(nn.Module):
    """DETR's ``TransformerDecoderLayer`` with ``normalize_before=True`` (``forward_pre``), eval mode."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.1)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.1)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        q = self.norm1(tgt)
        tgt = tgt + self.self_attn(q, q, value=q, need_weights=False)[0]
        q = self.norm2(tgt)
        tgt = tgt + self.multihead_attn(query=q, key=memory, value=memory, need_weights=False)[0]
        return tgt + self.linear2(F.relu(self.linear1(self.norm3(tgt))))


class QueryDecoder(nn.Module):
    def __init__(self, layer: DecoderLayer, num_layers: int, d_model: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(layer) for _ in range(num_layers)])
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            tgt = layer(tgt, memory)
        return self.norm(tgt)


class MedVInTModel(nn.Module):
    """``QA_model`` with the PMC-CLIP vision module; the LM is ``lm`` (``llamacasual.base_model.model``)."""

    def __init__(self, cfg: MedVInTConfig) -> None:
        super().__init__()
        from transformers import LlamaForCausalLM

        self.cfg = cfg
        self.vision_model = resnet_trunk(cfg.resnet_layers, cfg.resnet_width)
        self.query_embed = nn.Embedding(cfg.queries, cfg.features)
        self.decoder = QueryDecoder(DecoderLayer(cfg.features, cfg.decoder_heads, cfg.decoder_ff), cfg.decoder_layers,
                                    cfg.features)
        self.fc_l1 = nn.Linear(cfg.features, cfg.features)
        self.fc_l2 = nn.Linear(cfg.features, cfg.hidden_size)
        self.lm = LlamaForCausalLM(cfg.lm_config())

    def visual_tokens(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(B, 3, S, S)`` -> ``(B, queries, hidden)``, the prefix put before BOS."""
        feats = self.vision_model(pixels).flatten(2).permute(2, 0, 1)  # (patches, B, d), sequence-first
        queries = self.query_embed.weight[:, None, :].expand(-1, pixels.shape[0], -1)
        out = self.decoder(queries, feats).transpose(0, 1)
        return self.fc_l2(F.relu(self.fc_l1(out)))


# -- loading -----------------------------------------------------------------------------------------


def convert_state_dict(state: Mapping[str, torch.Tensor], lora_alpha: float) -> tuple[dict[str, torch.Tensor], int]:
    """Released keys -> this module's keys, LoRA merged; returns the state and the number of merges.

    ``llamacasual.base_model.model.X`` -> ``lm.X``; each ``P.lora_A``/``P.lora_B`` pair is folded
    into ``P.weight`` as ``W + (alpha / r) · B @ A`` (r = rows of A) in fp32, then cast back.
    """
    renamed: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.replace(".base_layer.", ".").replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
        renamed["lm." + key[len(LM_PREFIX):] if key.startswith(LM_PREFIX) else key] = value
    out = {k: v for k, v in renamed.items() if ".lora_A." not in k and ".lora_B." not in k}
    merged = 0
    for key in [k for k in renamed if k.endswith(".lora_A.weight")]:
        base = key[: -len(".lora_A.weight")]
        a, b = renamed[key], renamed.get(base + ".lora_B.weight")
        target = base + ".weight"
        if b is None or target not in out:
            raise UsageError(f"model 'medvint': LoRA pair {base} is incomplete (lora_B or the base weight is missing)")
        delta = (lora_alpha / a.shape[0]) * (b.float() @ a.float())
        out[target] = (out[target].float() + delta).to(out[target].dtype)
        merged += 1
    return out, merged


def config_from_state(state: Mapping[str, torch.Tensor], heads: int, lm_json: Mapping[str, Any]) -> MedVInTConfig:
    """The released architecture's sizes, read off the (converted) weights.

    The Q-former's head count is not visible in the weights (``heads=``, the authors' default 8);
    the LM's comes from ``config.json`` beside the tokenizer when there is one, else LLaMA's
    128-wide heads.
    """
    try:
        width = state["vision_model.6.weight"].shape[0]
        embed = state["lm.model.embed_tokens.weight"]
        queries, features = state["query_embed.weight"].shape
    except KeyError as exc:
        raise UsageError(f"model 'medvint': the checkpoint lacks {exc.args[0]} (is it a MedVInT-TD PMC-CLIP checkpoint?)") from None
    if "vision_model.vision_model.embeddings.patch_embedding.weight" in state:
        raise UsageError("model 'medvint': this is a CLIP-vision MedVInT checkpoint; radbench supports the PMC-CLIP release")

    def count(pattern: str) -> int:
        return 1 + max((int(m.group(1)) for k in state if (m := re.match(pattern, k))), default=-1)

    if features != width * 16:
        raise UsageError(f"model 'medvint': query_embed is {features} wide but the ResNet trunk gives {width * 16} channels")
    hidden = embed.shape[1]
    return MedVInTConfig(
        resnet_layers=tuple(count(rf"vision_model\.{i}\.(\d+)\.") for i in (10, 11, 12)),
        resnet_width=width,
        queries=queries,
        decoder_layers=count(r"decoder\.layers\.(\d+)\."),
        decoder_heads=heads,
        decoder_ff=state["decoder.layers.0.linear1.weight"].shape[0],
        vocab_size=embed.shape[0],
        hidden_size=hidden,
        intermediate_size=state["lm.model.layers.0.mlp.gate_proj.weight"].shape[0],
        num_hidden_layers=count(r"lm\.model\.layers\.(\d+)\."),
        num_attention_heads=int(lm_json.get("num_attention_heads", hidden // 128)),
        rms_norm_eps=float(lm_json.get("rms_norm_eps", 1e-6)),
    )


# -- preprocessing and prompts -----------------------------------------------------------------------


# radbench's ``medvint-512`` preset, the authors' test transform in their order: convert("RGB") first
# (a 16-bit PNG clips at 255), Resize((512, 512), bicubic), ToTensor, Normalize(ImageNet).
PRESET = images.Preprocess("medvint-512", 512, "squash", "bicubic", images.IMAGENET_MEAN, images.IMAGENET_STD)


def preprocess_spec(size: int, slices: str = "middle") -> images.Preprocess:
    """radbench's ``medvint-512`` preset (``Resize((512, 512), BICUBIC)``, ImageNet mean/std) at ``size``;
    a 3D study gives the slices ``slices`` picks (default: the middle one)."""
    return replace(PRESET, size=size).with_slices(slices)


def question_text(request: Request) -> str:
    return "".join(s.text or "" for s in request.query.segments if s.image is None).strip()


def render_prompt(request: Request, choice: bool) -> str:
    """The authors' test prompts; options are lettered ``" A:…"`` and joined without separators."""
    question = question_text(request)
    if not choice:
        return f"Question: {question}The Answer is:"
    if len(request.options) > len(LETTERS):
        raise SampleError(f"{len(request.options)} answer options; MedVInT's letters go to {LETTERS[-1]}")
    choices = "".join(f" {LETTERS[i]}:{option}" for i, option in enumerate(request.options))
    return f"Question: {question}Choices:{choices}The Answer is:"


def letter_continuations(tokenizer: Any, prompt_ids: Sequence[int], prompt: str, count: int) -> tuple[list[int], list[int]]:
    """Tokens shared by every ``" A"``…continuation after the prompt, and each letter's first own token.

    With LLaMA's vocabulary ``▁A``… are single pieces, so the shared part is empty and the letters are
    scored at the prompt's last position, as the authors read them. A vocabulary without those pieces
    (the tiny preset) first needs the shared ``▁``.
    """
    continuations = []
    for letter in LETTERS[:count]:
        ids = tokenizer(prompt + " " + letter)["input_ids"]
        shared = 0
        while shared < min(len(ids), len(prompt_ids)) and ids[shared] == prompt_ids[shared]:
            shared += 1
        continuations.append(ids[shared:])
    common: list[int] = []
    while all(len(c) > len(common) + 1 for c in continuations) and len({c[len(common)] for c in continuations}) == 1:
        common.append(continuations[0][len(common)])
    firsts = [c[len(common)] for c in continuations]
    if len(set(firsts)) != len(firsts):
        raise SampleError("the tokenizer does not give the option letters distinct tokens")
    return common, firsts


# -- the adapter --------------------------------------------------------------------------------------


# The released multiple-choice checkpoint inside xmcmic/MedVInT-TD (the one the authors' test.py loads).
MEDVINT_CHOICE = "VQA_lora_PMC_LLaMA_PMCCLIP/choice/checkpoint-4000"


@dataclass(frozen=True)
class MedVInTArgs(CheckpointArgs):
    """``checkpoint=`` a MedVInT-TD ``pytorch_model.bin`` (or its folder); ``tokenizer_path=`` PMC-LLaMA's tokenizer.

    ``mode=auto`` scores answer options by their letters' logits, ``mode=open`` generates;
    ``slices=`` which slices of a 3D study become visual prefixes (middle, even:K, all).
    Defaults: the released ``xmcmic/MedVInT-TD`` (its multiple-choice checkpoint,
    ``VQA_lora_PMC_LLaMA_PMCCLIP/choice/checkpoint-4000``) and PMC-LLaMA's tokenizer from
    ``chaoyi-wu/PMC_LLAMA_7B``; either key takes a local path or another repo id.
    """

    checkpoint: str | None = hub_path(
        "xmcmic/MedVInT-TD", patterns=(f"{MEDVINT_CHOICE}/pytorch_model.bin", "pytorch_model.bin", "model.safetensors"),
        locate=("pytorch_model.bin", "model.safetensors"))
    tokenizer_path: str | None = hub_path("chaoyi-wu/PMC_LLAMA_7B", patterns=("tokenizer.model", "*.json"),
                                          locate=("tokenizer.model",))
    heads: int = field(default=8, metadata={"minimum": 1})
    lora_alpha: float = 32.0
    mode: str = "auto"
    slices: str = "middle"

    def check(self, model: str) -> None:
        super().check(model)
        if self.mode not in ("auto", "open"):
            raise UsageError(f"model 'medvint': mode={self.mode!r}; use auto (options scored by logits) or open")


class MedVInTAdapter(CheckpointAdapter):
    """MedVInT-TD behind ``generate()``; see the module docstring for what is the authors' and what not."""

    name = "medvint"
    supports_shots = False  # its prompt format has no place for exemplars: their turns are dropped
    version = "1"
    Args = MedVInTArgs

    def __init__(self, model: MedVInTModel, tokenizer: Any, build: Build, fingerprint: str, source: dict[str, Any],
                 mode: str, spec: images.Preprocess, lm_eos: list[int] | None = None) -> None:
        super().__init__(model, tokenizer, build, fingerprint, source, spec)
        self.cfg = model.cfg
        self.mode = mode
        self.lm_eos = lm_eos  # the base LM's generation-config EOS, which the authors' generate stopped at
        self._step = decoding.hf_step(model.lm)

    def split_points(self) -> tuple[torch.nn.Module, str, torch.nn.Module]:
        return self.model, "lm.model.layers", self.model.lm

    @classmethod
    def build_tiny(cls, args: MedVInTArgs, build: Build) -> "MedVInTAdapter":
        """The same architecture at toy sizes (ResNet width 8, 4 queries, 64-wide LLaMA), seeded."""
        tokenizer = tiny.tiny_llama_tokenizer(cls.name)
        cfg = MedVInTConfig.tiny(len(tokenizer))
        with tiny.seeded(build.seed):
            model = MedVInTModel(cfg)
            randomize_batchnorm(model)
        model.to(device=build.device, dtype=build.dtype)
        spec = preprocess_spec(cfg.image_size, args.slices)
        fingerprint = cls.tiny_identity(asdict(cfg), build, spec, mode=args.mode)
        return cls(model, tokenizer, build, fingerprint, {"preset": "tiny-random", "seed": build.seed}, args.mode, spec,
                   lm_eos=[model.lm.config.eos_token_id])

    @classmethod
    def load_released(cls, args: MedVInTArgs, build: Build) -> "MedVInTAdapter":
        """``checkpoint=`` a MedVInT-TD ``pytorch_model.bin`` (or its folder); ``tokenizer_path=`` PMC-LLaMA's tokenizer."""
        expected = "MedVInT-TD's pytorch_model.bin (xmcmic/MedVInT-TD, VQA_lora_PMC_LLaMA_PMCCLIP/<choice|blank>/checkpoint-*)"
        ckpt = require_file(cls.name, "checkpoint", args.checkpoint, expected)
        weights = find_in(cls.name, "checkpoint", ckpt, ("pytorch_model.bin", "model.safetensors"), expected)
        tok_dir = require_file(cls.name, "tokenizer_path", args.tokenizer_path,
                               "the PMC-LLaMA (LLaMA-1) tokenizer folder with tokenizer.model")
        tok_dir = tok_dir if tok_dir.is_dir() else tok_dir.parent
        tokenizer = load_llama_tokenizer(cls.name, tok_dir)
        lm_json_path = tok_dir / "config.json"
        lm_json = safe_io.read_json_object(lm_json_path, "model 'medvint'") if lm_json_path.is_file() else {}
        state, merged = convert_state_dict(loading.load_state_dict(weights, cls.name), args.lora_alpha)
        cfg = config_from_state(state, args.heads, lm_json)
        if cfg.vocab_size != len(tokenizer):
            raise UsageError(f"model 'medvint': the checkpoint has {cfg.vocab_size} token rows, the tokenizer in "
                             f"{tok_dir} {len(tokenizer)}")
        with loading.fast_init(build.device, build.dtype):
            model = MedVInTModel(cfg)
        report = loading.load_checked(model, state, model=cls.name, source=weights, stale=STALE_KEYS)
        spec = preprocess_spec(cfg.image_size, args.slices)
        files = [weights, tok_dir / "tokenizer.model"] + ([lm_json_path] if lm_json else [])
        fingerprint = cls.weights_identity(files, args, build, spec, heads=args.heads, lora_alpha=args.lora_alpha,
                                           mode=args.mode)
        lm_eos = generation_eos(tok_dir)
        source = {"checkpoint": str(weights), "tokenizer_path": str(tok_dir), "lora_pairs_merged": merged,
                  "lm_eos_token_id": lm_eos, "keys": report.to_json()}
        return cls(model, tokenizer, build, fingerprint, source, args.mode, spec, lm_eos=lm_eos)

    def stop_ids(self) -> list[int]:
        if self.protocol != AUTHORS:
            return list(EOS_IDS)
        if not self.lm_eos:
            raise UsageError("model 'medvint': protocol=authors stops at the base LM's own EOS, but tokenizer_path "
                             "has no generation_config.json or config.json with eos_token_id (put PMC-LLaMA's there)")
        return list(self.lm_eos)

    def decoding_facts(self) -> dict[str, Any]:
        if self.mode != "auto":
            options = "generated"
        elif self.protocol == AUTHORS:
            options = "argmax at every position, last character matched to ' A:{option}' with difflib (test.py)"
        else:
            options = "next-token logits of the option letters"
        eos = self.lm_eos if self.protocol == AUTHORS else list(EOS_IDS)
        facts = {"greedy": True, "eos_token_id": eos, "default_max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
                 "options": options}
        if self.protocol == AUTHORS:
            facts["authors_settings_override_gen_kwargs"] = {"num_beams": 1, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS}
        return {"mode": self.mode, "decoding": facts}

    def prefix(self, request: Request) -> torch.Tensor:
        """The request's visual embeddings, ``(queries × images, hidden)`` (empty without images).

        A volume counts as one image per chosen slice.
        """
        refs = request.query.images
        if not refs:
            return torch.zeros((0, self.cfg.hidden_size), device=self.device, dtype=self.dtype)
        arrays = [images.prepare(r, self.spec).array for r in refs]
        pixels = np.concatenate([a if a.ndim == 4 else a[None] for a in arrays])  # a volume: one per slice
        visual = self.model.visual_tokens(torch.from_numpy(pixels).to(self.device, self.dtype))
        return visual.reshape(-1, visual.shape[-1])

    def embed(self, request: Request, ids: Sequence[int]) -> torch.Tensor:
        tokens = self.model.lm.get_input_embeddings()(torch.tensor(list(ids), device=self.device))
        return torch.cat([self.prefix(request), tokens])

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request]) -> list[str]:
        out: list[str] = [""] * len(requests)
        choice = [i for i, r in enumerate(requests) if r.options and self.mode == "auto"]
        open_ = [i for i in range(len(requests)) if i not in choice]
        if choice:
            choose = self._choose_as_authors if self.protocol == AUTHORS else self._choose
            for i, answer in zip(choice, choose([requests[i] for i in choice])):
                out[i] = answer
        if open_:
            for i, answer in zip(open_, self._generate_open([requests[i] for i in open_])):
                out[i] = answer
        return out

    def _generate_open(self, requests: Sequence[Request]) -> list[str]:
        # protocol=authors: generate_long_sentence's greedy 50 new tokens, whatever the task asks
        overrides = {"num_beams": 1, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS} if self.protocol == AUTHORS else {}
        decodings = [decoding.decoding_of(self.name, r.gen_kwargs, DEFAULT_MAX_NEW_TOKENS, overrides) for r in requests]
        decoding.batch_beams(self.name, decodings)
        embeds = [self.embed(r, self.tokenizer(render_prompt(r, choice=False))["input_ids"]) for r in requests]
        inputs_embeds, mask = decoding.left_pad_embeds(embeds)
        new_tokens = decoding.generate(self._step, inputs_embeds=inputs_embeds, attention_mask=mask,
                                       decodings=decodings, eos_token_ids=self.stop_ids(), pad_token_id=0)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in new_tokens]

    def _choose(self, requests: Sequence[Request]) -> list[str]:
        """One forward pass per batch; each request's option whose letter has the highest logit."""
        embeds, letters = [], []
        for request in requests:
            prompt = render_prompt(request, choice=True)
            ids = self.tokenizer(prompt)["input_ids"]
            common, firsts = letter_continuations(self.tokenizer, ids, prompt, len(request.options))
            embeds.append(self.embed(request, list(ids) + common))
            letters.append(firsts)
        inputs_embeds, mask = decoding.left_pad_embeds(embeds)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = self.model.lm(inputs_embeds=inputs_embeds, attention_mask=mask, position_ids=position_ids,
                               logits_to_keep=1).logits[:, -1, :].float()
        return [r.options[int(logits[row, ids].argmax())] for row, (r, ids) in enumerate(zip(requests, letters))]


    def _choose_as_authors(self, requests: Sequence[Request]) -> list[str]:
        """``test.py``'s choice: argmax at every position (visual prefix included), decoded, last character, difflib."""
        embeds = [self.embed(r, self.tokenizer(render_prompt(r, choice=True))["input_ids"]) for r in requests]
        inputs_embeds, mask = decoding.left_pad_embeds(embeds)
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        argmax = self.model.lm(inputs_embeds=inputs_embeds, attention_mask=mask,
                               position_ids=position_ids).logits.argmax(-1)
        rows, real = argmax.tolist(), mask.bool().tolist()
        answers = []
        for request, row, keep in zip(requests, rows, real):
            text = self.tokenizer.decode([tok for tok, k in zip(row, keep) if k], skip_special_tokens=True)
            if not text:
                raise SampleError("the argmax over the prompt decodes to no text (test.py would fail on it too)")
            pred = text[-1]
            lettered = [f" {LETTERS[i]}:{option}" for i, option in enumerate(request.options)]
            index = most_similar(lettered, pred)
            answers.append(pred if index is None else request.options[index])
        return answers


def most_similar(candidates: Sequence[str], target: str) -> int | None:
    """The first candidate with the highest ``difflib`` ratio to ``target``; ``None`` when every ratio is 0."""
    best, best_ratio = None, 0.0
    for index, candidate in enumerate(candidates):
        ratio = difflib.SequenceMatcher(None, candidate, target).ratio()
        if ratio > best_ratio:
            best, best_ratio = index, ratio
    return best


def generation_eos(folder: Any) -> list[int] | None:
    """The EOS ids the LM folder's ``generation_config.json`` (else ``config.json``) gives ``generate``."""
    for name in ("generation_config.json", "config.json"):
        path = folder / name
        if not path.is_file():
            continue
        value = safe_io.read_json_object(path, "model 'medvint'").get("eos_token_id")
        if value is not None:
            return [int(v) for v in value] if isinstance(value, list) else [int(value)]
    return None


def randomize_batchnorm(model: nn.Module) -> None:
    """Give the tiny model's BatchNorm layers non-trivial running statistics, as trained ones have."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
            module.weight.data.uniform_(0.5, 1.5)
