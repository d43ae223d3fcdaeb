"""OpenFlamingo and Med-Flamingo: registered as ``openflamingo`` and ``medflamingo``.

Both are the OpenFlamingo architecture (:mod:`radbench.models.flamingo_modeling`; Med-Flamingo pins
open-flamingo 0.0.2): a frozen CLIP ViT-L/14, a perceiver resampler (64 latents per image), and
gated cross-attention blocks inserted before every n-th decoder layer of a frozen causal LM. The
checkpoint files are read by :mod:`radbench.models.flamingo_convert`; this file holds the adapters,
their prompts and their answer clean-up.

Which image text attends to (``legacy_media_attention``): ``0`` is open-flamingo 2.x, OpenFlamingo's
default; ``1`` is open-flamingo 0.0.2, Med-Flamingo's default (see
:func:`radbench.models.flamingo_modeling.text_time`).

The lm_head rows of the three added tokens were never trained or saved; they are zeros here (a
documented, deterministic choice), and ``<image>``/``<PAD>`` are never generated.

``protocol=authors``: OpenFlamingo decodes as its ``eval/evaluate.py`` (commit 655f693) does, beam
search with ``num_beams=3, length_penalty=0.0`` (transformers' ``early_stopping=False``), 5 new tokens
for VQA and 20 for captions (every other task), then the same ``postprocess_vqa_generation`` clean-up
radbench applies. Med-Flamingo's ``scripts/demo.py`` decodes greedily (10 new tokens), so its
decoding is radbench's; its answer is the demo's: the generated text decoded *with* special tokens
(the ``<|endofchunk|>`` that stopped it included), then ``clean_generation`` (drop ``'<unk> '``,
strip), without radbench's cut at a new line or ``Question:``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Sequence

import numpy as np
import torch

from radbench import images
from radbench.errors import SampleError
from radbench.models import decoding, loading, tiny
from radbench.models.args import AUTHORS, CheckpointArgs, find_in, require_file
from radbench.models.hub_args import hub_path
from radbench.models.checkpoint import Build, CheckpointAdapter
from radbench.models.flamingo_convert import (
    STALE_KEYS,
    grow_vocab,
    infer_every_n,
    load_clip,
    load_lm,
    load_tokenizer,
    normalize_checkpoint,
    prepare_tokenizer,
    weight_files,
)
from radbench.models.flamingo_modeling import EOC, IMAGE, LM_LAYOUTS, PAD, Flamingo, FlamingoConfig
from radbench.types import ImageRef, Request

# ---------------------------------------------------------------------------------------------
# Images and prompts
# ---------------------------------------------------------------------------------------------


# radbench's ``clip-224`` preset, open_clip's ViT-L-14 eval transform as both Flamingo families ran it:
# Resize(224, bicubic) -> CenterCrop(224) -> convert("RGB") -> ToTensor -> Normalize(OpenAI). The RGB
# conversion comes last, so a 16-bit file is resized on its 16-bit values and clipped at 255 after.
PRESET = images.Preprocess("clip-224", 224, "shortest-edge-crop", "bicubic", images.OPENAI_CLIP_MEAN,
                           images.OPENAI_CLIP_STD, rgb="last")


def preprocess_spec(size: int) -> images.Preprocess:
    """radbench's ``clip-224`` preset at ``size``: open_clip's ViT-L-14 eval transform (bicubic
    shortest-edge resize, center crop, OpenAI mean/std); a 3D study shows its middle slice."""
    return replace(PRESET, size=size)


def pixels(ref: ImageRef, spec: images.Preprocess) -> torch.Tensor:
    """One image (or a 3D study's middle slice) as ``(3, size, size)`` CLIP input."""
    array = images.prepare(ref, spec).array
    if array.ndim == 4:  # (K, 3, S, S) slices of a volume; the default policy picks K = 1
        array = array[array.shape[0] // 2]
    return torch.from_numpy(np.ascontiguousarray(array))


def turn_text(turn: Any, refs: list[ImageRef]) -> str:
    parts = []
    for seg in turn.segments:
        if seg.image is not None:
            parts.append(IMAGE)
            refs.append(seg.image)
        else:
            parts.append(seg.text or "")
    return "".join(parts)


def openflamingo_prompt(request: Request, short_answer: str) -> tuple[str, list[ImageRef]]:
    """OpenFlamingo's VQA eval format: ``<image>Question:{q} Short answer:{a}<|endofchunk|>`` demos, ``\\n``-joined."""
    refs: list[ImageRef] = []
    parts = []
    for turn in request.turns:
        question = turn_text(turn, refs)
        image_prefix = re.match(rf"^(?:{re.escape(IMAGE)})*", question).group(0)  # type: ignore[union-attr]
        body = f"{image_prefix}Question:{question[len(image_prefix):]} {short_answer}"
        parts.append(body if turn.answer is None else f"{body}{turn.answer}{EOC}\n")
    return "".join(parts), refs


MEDFLAMINGO_SYSTEM = ("You are a helpful medical assistant. You are being provided with images, a question about the "
                      "image and an answer. Follow the examples and answer the last question. ")


def medflamingo_prompt(request: Request) -> tuple[str, list[ImageRef]]:
    """Med-Flamingo's demo: ``{system} <image>Question: {q} Answer: {a}.<|endofchunk|>...<image>Question: {q} Answer:``."""
    refs: list[ImageRef] = []
    parts = [MEDFLAMINGO_SYSTEM]
    for turn in request.turns:
        question = turn_text(turn, refs)
        image_prefix = re.match(rf"^(?:{re.escape(IMAGE)})*", question).group(0)  # type: ignore[union-attr]
        body = f"{image_prefix}Question: {question[len(image_prefix):]} Answer:"
        if turn.answer is None:
            parts.append(body)
        else:
            answer = turn.answer.strip()
            parts.append(f"{body} {answer}{'' if answer.endswith('.') else '.'}{EOC}")
    return "".join(parts), refs


def openflamingo_answer(text: str, task: str) -> str:
    """``postprocess_vqa_generation``: cut at Question/Answer/Short, then (VQA only) at the first ', '."""
    text = re.split("Question|Answer|Short", text, maxsplit=1)[0]
    if task == "vqa":
        text = re.split(", ", text, maxsplit=1)[0]
    return text.strip()


def clean_generation(text: str) -> str:
    """Med-Flamingo's ``demo_utils.clean_generation``: drop ``'<unk> '``, strip."""
    return text.replace("<unk> ", "").strip()


def medflamingo_answer(text: str, task: str) -> str:
    """``clean_generation`` (drop ``<unk> ``), then cut at a new line or the next ``Question:``."""
    text = text.replace("<unk> ", "")
    return re.split(r"\n|Question:", text, maxsplit=1)[0].strip()


# ---------------------------------------------------------------------------------------------
# The adapters
# ---------------------------------------------------------------------------------------------

# What a Flamingo's language model and CLIP tower are read from in a Hub repo (safetensors weights only,
# so a repo that also carries the same weights as .bin is not downloaded twice).
LM_FILES = ("*.json", "tokenizer.model", "*.safetensors")
CLIP_FILES = ("*.json", "model.safetensors")
CLIP_L14 = "openai/clip-vit-large-patch14"  # CLIP ViT-L/14 (open_clip's ViT-L-14 "openai" weights)


@dataclass(frozen=True)
class FlamingoArgs(CheckpointArgs):
    """``checkpoint=`` the Flamingo file, ``lm_path=`` the LM folder, ``vision_path=`` CLIP ViT-L/14.

    ``legacy_media_attention`` unset: the adapter's default (:attr:`FlamingoAdapter.legacy_default`).
    Each path also takes a Hub repo id; each adapter's subclass names its released repos as defaults.
    """

    lm_path: str | None = hub_path(patterns=LM_FILES, locate=("config.json",))
    vision_path: str | None = hub_path(patterns=CLIP_FILES)
    batch_size: int = field(default=8, metadata={"minimum": 1})
    legacy_media_attention: bool | None = None


@dataclass(frozen=True)
class OpenFlamingoArgs(FlamingoArgs):
    """OpenFlamingo-4B (ViT-L/14 + RedPajama-INCITE-Base-3B, a GPT-NeoX transformers loads without remote
    code); the MPT-based releases need MosaicML's remote code, which radbench never runs."""

    checkpoint: str | None = hub_path("openflamingo/OpenFlamingo-4B-vitl-rpj3b", patterns=("checkpoint.pt",),
                                      locate=("checkpoint.pt",))
    lm_path: str | None = hub_path("togethercomputer/RedPajama-INCITE-Base-3B-v1", patterns=LM_FILES,
                                   locate=("config.json",))
    vision_path: str | None = hub_path(CLIP_L14, patterns=CLIP_FILES)


@dataclass(frozen=True)
class MedFlamingoArgs(FlamingoArgs):
    """Med-Flamingo's ``model.pt`` on LLaMA-7B (v1; the authors name decapoda-research/llama-7b-hf, no longer
    on the Hub: huggyllama/llama-7b holds the same weights) and CLIP ViT-L/14."""

    checkpoint: str | None = hub_path("med-flamingo/med-flamingo", patterns=("model.pt",), locate=("model.pt",))
    lm_path: str | None = hub_path("huggyllama/llama-7b", patterns=LM_FILES, locate=("config.json",))
    vision_path: str | None = hub_path(CLIP_L14, patterns=CLIP_FILES)


class FlamingoAdapter(CheckpointAdapter):
    """Shared loading and batched generation; subclasses fix the checkpoint file, prompt and defaults."""

    Args = FlamingoArgs
    checkpoint_file = ""
    checkpoint_hint = ""
    legacy_default = False
    default_max_new_tokens = 10

    def __init__(self, model: Flamingo, tokenizer: Any, image_size: int, build: Build, fingerprint: str,
                 source: dict[str, Any]) -> None:
        super().__init__(model, tokenizer, build, fingerprint, source, preprocess_spec(image_size))
        self.eoc_id = tokenizer.convert_tokens_to_ids(EOC)
        self.suppress = [tokenizer.convert_tokens_to_ids(IMAGE)]
        if PAD in tokenizer.get_vocab():
            self.suppress.append(tokenizer.convert_tokens_to_ids(PAD))

    def render(self, request: Request) -> tuple[str, list[ImageRef]]:
        raise NotImplementedError

    def postprocess(self, text: str, task: str) -> str:
        raise NotImplementedError

    @classmethod
    def legacy(cls, args: FlamingoArgs) -> bool:
        return cls.legacy_default if args.legacy_media_attention is None else args.legacy_media_attention

    def split_points(self) -> tuple[torch.nn.Module, str, torch.nn.Module]:
        # The gated cross-attention blocks live inside the wrapped decoder layers, so they move with
        # them; accelerate's hooks on their submodules bring the media to the layer's GPU.
        layers_attr, _ = LM_LAYOUTS[self.model.lang_encoder.config.model_type]
        return self.model, f"lang_encoder.{layers_attr}", self.model.lang_encoder

    @classmethod
    def build_tiny(cls, args: FlamingoArgs, build: Build) -> "FlamingoAdapter":
        """The same architecture at toy sizes (tiny LLaMA, tiny CLIP, 64 latents), seeded."""
        from transformers import CLIPVisionModel, LlamaForCausalLM

        legacy = cls.legacy(args)
        tokenizer = prepare_tokenizer(cls.name, tiny.tiny_llama_tokenizer(cls.name))
        vision_cfg = tiny.tiny_clip_vision_config()
        lm_cfg = tiny.tiny_llama_config(len(tokenizer))
        cfg = FlamingoConfig.tiny(vision_cfg.hidden_size)
        with tiny.seeded(build.seed):
            model = Flamingo(CLIPVisionModel(vision_cfg), LlamaForCausalLM(lm_cfg), cfg,
                             tokenizer.convert_tokens_to_ids(IMAGE), legacy)
        model.to(device=build.device, dtype=build.dtype)
        fingerprint = cls.tiny_identity(
            {"flamingo": asdict(cfg), "clip": vision_cfg.to_dict(), "lm": lm_cfg.to_dict()}, build,
            preprocess_spec(vision_cfg.image_size), legacy_media_attention=legacy)
        source = {"preset": "tiny-random", "legacy_media_attention": legacy}
        return cls(model, tokenizer, vision_cfg.image_size, build, fingerprint, source)

    @classmethod
    def load_released(cls, args: FlamingoArgs, build: Build) -> "FlamingoAdapter":
        legacy, device, dtype = cls.legacy(args), build.device, build.dtype
        ckpt = require_file(cls.name, "checkpoint", args.checkpoint, cls.checkpoint_hint)
        weights = find_in(cls.name, "checkpoint", ckpt, (cls.checkpoint_file,), cls.checkpoint_hint)
        lm_dir = require_file(cls.name, "lm_path", args.lm_path,
                              "the LM folder in transformers format (config.json, weights, tokenizer)")
        vision = require_file(cls.name, "vision_path", args.vision_path,
                              "CLIP ViT-L/14: the openai/clip-vit-large-patch14 transformers folder, or an "
                              "open_clip ViT-L-14 weights file")
        lm = load_lm(cls.name, lm_dir, dtype, device)
        model_type = lm.config.model_type
        llama = model_type == "llama"
        tokenizer = prepare_tokenizer(cls.name, load_tokenizer(cls.name, lm_dir, llama))
        clip = load_clip(cls.name, vision, dtype, device)
        layers_attr, embed_attr = LM_LAYOUTS[model_type]
        state = normalize_checkpoint(loading.load_state_dict(weights, cls.name), layers_attr)
        n_layers = len(lm.get_submodule(layers_attr))
        defaults = {"cross_attn_every_n_layers": infer_every_n(cls.name, state, layers_attr, n_layers),
                    "vis_dim": clip.config.hidden_size}
        overrides = loading.config_overrides(cls.name, weights.parent, [f.name for f in fields(FlamingoConfig)])
        cfg = replace(FlamingoConfig(), **{**defaults, **overrides})
        grow_vocab(lm, len(tokenizer))
        with loading.fast_init(device, dtype):  # the perceiver and gated blocks are filled from the checkpoint
            model = Flamingo(clip, lm, cfg, tokenizer.convert_tokens_to_ids(IMAGE), legacy)
        # The checkpoint must hold the perceiver, every gated block and the input embeddings; the rest
        # (LM decoder and head, CLIP) came from lm_path / vision_path.
        required = rf"^(?!perceiver\.|lang_encoder\.{re.escape(layers_attr)}\.\d+\.gated_cross_attn_layer\." \
                   rf"|lang_encoder\.{re.escape(embed_attr)}\.weight$)"
        report = loading.load_checked(model, state, model=cls.name, source=weights, stale=STALE_KEYS,
                                      not_in_checkpoint=[required])
        files = [weights, *weight_files(lm_dir), *(weight_files(vision) if vision.is_dir() else [vision])]
        image_size = clip.config.image_size
        fingerprint = cls.weights_identity(files, args, build, preprocess_spec(image_size),
                                           legacy_media_attention=legacy, flamingo=asdict(cfg))
        source = {"checkpoint": str(weights), "lm_path": str(lm_dir), "lm_type": model_type,
                  "vision_path": str(vision), "legacy_media_attention": legacy,
                  "cross_attn_every_n_layers": cfg.cross_attn_every_n_layers, "keys": report.to_json()}
        return cls(model, tokenizer, image_size, build, fingerprint, source)

    def authors_decoding(self, task: str) -> dict[str, Any]:
        """The decoding settings the authors' own code uses for ``task`` (``protocol=authors``)."""
        return {"num_beams": 1, "max_new_tokens": self.default_max_new_tokens}

    def decoding_of(self, request: Request) -> decoding.Decoding:
        overrides = self.authors_decoding(request.task) if self.protocol == AUTHORS else {}
        return decoding.decoding_of(self.name, request.gen_kwargs, self.default_max_new_tokens, overrides)

    def decoding_facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"greedy": True, "eos": EOC, "default_max_new_tokens": self.default_max_new_tokens}
        if self.protocol == AUTHORS:
            facts = {"eos": EOC, "authors_settings_override_gen_kwargs":
                     {task: self.authors_decoding(task) for task in ("vqa", "report")}}
        return {"decoding": {**facts, "never_generated": [IMAGE, PAD], "new_lm_head_rows": "zeros"}}

    def answer(self, tokens: list[int], settings: decoding.Decoding, task: str) -> str:
        """The answer radbench stores from a row's new tokens (EOS excluded)."""
        return self.postprocess(self.tokenizer.decode(tokens, skip_special_tokens=True), task)

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request]) -> list[str]:
        decodings = [self.decoding_of(r) for r in requests]
        beams = decoding.batch_beams(self.name, decodings)
        prompts, media = [], []
        for request in requests:
            prompt, refs = self.render(request)
            if not refs:
                raise SampleError(f"{self.name} needs at least one image per prompt (gated layers attend to images)")
            prompts.append(prompt)
            batch = torch.stack([pixels(r, self.spec) for r in refs]).to(self.device, self.dtype)
            media.append(self.model.encode_images(batch))
        batch_media = media[0].new_zeros((len(media), max(m.shape[0] for m in media), *media[0].shape[1:]))
        for row, m in enumerate(media):
            batch_media[row, : m.shape[0]] = m
        ids = [self.tokenizer(p)["input_ids"] for p in prompts]
        input_ids, mask = decoding.left_pad(ids, self.tokenizer.pad_token_id, self.device)
        # beam search runs each row num_beams times (open_flamingo repeats vision_x the same way)
        self.model.condition(batch_media.repeat_interleave(beams, dim=0))
        try:
            new_tokens = decoding.generate(self.model.step, input_ids=input_ids, attention_mask=mask,
                                           decodings=decodings, eos_token_ids=[self.eoc_id],
                                           suppress_token_ids=self.suppress, pad_token_id=self.tokenizer.pad_token_id)
        finally:
            self.model.condition(None)
        return [self.answer(t, d, r.task) for t, d, r in zip(new_tokens, decodings, requests)]



class OpenFlamingoAdapter(FlamingoAdapter):
    """OpenFlamingo: v1 ``checkpoint.pt`` on LLaMA-7B, or a v2 checkpoint on HF-native MPT / RedPajama (NeoX).

    Prompt: the v2 eval VQA format (``Short answer:``); defaults as ``evaluate.py`` for VQA except
    beam search (radbench decodes greedily): ``max_new_tokens=5``.
    """

    name = "openflamingo"
    version = "1"
    Args = OpenFlamingoArgs
    checkpoint_file = "checkpoint.pt"
    checkpoint_hint = "OpenFlamingo's checkpoint.pt (e.g. from openflamingo/OpenFlamingo-4B-vitl-rpj3b)"
    legacy_default = False
    default_max_new_tokens = 5

    def render(self, request: Request) -> tuple[str, list[ImageRef]]:
        return openflamingo_prompt(request, "Short answer:")

    def authors_decoding(self, task: str) -> dict[str, Any]:
        """``evaluate.py``: ``evaluate_vqa`` (5 tokens) and ``evaluate_captioning`` (20), both 3 beams, penalty 0."""
        return {"num_beams": 3, "length_penalty": 0.0, "max_new_tokens": 5 if task == "vqa" else 20}

    def postprocess(self, text: str, task: str) -> str:
        return openflamingo_answer(text, task)


class MedFlamingoAdapter(FlamingoAdapter):
    """Med-Flamingo: ``model.pt`` on LLaMA-7B + CLIP ViT-L/14, open-flamingo 0.0.2 semantics by default.

    Prompt and decoding as ``scripts/demo.py``: system sentence, ``Question: ... Answer:`` turns,
    greedy, ``max_new_tokens=10``, EOS ``<|endofchunk|>``.
    """

    name = "medflamingo"
    version = "1"
    Args = MedFlamingoArgs
    checkpoint_file = "model.pt"
    checkpoint_hint = "Med-Flamingo's model.pt (from med-flamingo/med-flamingo)"
    legacy_default = True
    default_max_new_tokens = 10

    def render(self, request: Request) -> tuple[str, list[ImageRef]]:
        return medflamingo_prompt(request)

    def answer(self, tokens: list[int], settings: decoding.Decoding, task: str) -> str:
        if self.protocol != AUTHORS:
            return super().answer(tokens, settings, task)
        # demo.py decodes what generate returned, special tokens and all: the <|endofchunk|> that
        # stopped the row (a row shorter than its limit stopped at it) is part of the response.
        stopped_at_eos = len(tokens) < settings.max_new_tokens
        text = self.tokenizer.decode(tokens + ([self.eoc_id] if stopped_at_eos else []), skip_special_tokens=False)
        return clean_generation(text)

    def postprocess(self, text: str, task: str) -> str:
        return medflamingo_answer(text, task)
