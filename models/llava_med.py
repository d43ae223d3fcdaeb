"""LLaVA-Med v1.5 (Mistral-7B-Instruct + CLIP ViT-L/14-336 + 2-layer GELU MLP): model ``llava-med``.

The released ``llava_mistral`` checkpoint (``microsoft/llava-med-v1.5-mistral-7b``: four safetensors
shards, ``config.json``, ``tokenizer.model``) is loaded into transformers'
``LlavaForConditionalGeneration`` by renaming keys (:func:`convert_key`), so no LLaVA code and no
``trust_remote_code`` is needed:

==============================================  =============================================
LLaVA-Med key                                   transformers 5.x key
==============================================  =============================================
``model.embed_tokens/layers/norm.*``            ``model.language_model.*``
``lm_head.weight``                              ``lm_head.weight``
``model.mm_projector.{0,2}.*``                  ``model.multi_modal_projector.linear_{1,2}.*``
``model.vision_tower.vision_tower.vision_model.X``  ``model.vision_tower.X``
==============================================  =============================================

The vision weights come from the shards (the authors' loader ignores them and downloads
``openai/clip-vit-large-patch14-336`` from the hub; the tower is frozen, so they are that model's
weights). ``vision_path=DIR`` (a local CLIP folder, e.g. ``openai/clip-vit-large-patch14-336``
downloaded beforehand) replaces them. The tower's shape is read from the weights; its head count
follows CLIP's 64-wide heads (16 for ViT-L), unless ``vision_path`` gives a ``config.json``.

Reproducing the authors' ``model_vqa.py`` (conv mode ``mistral_instruct``, temperature 0):

* Prompt ``[INST] <image>\\n{question} [/INST]``, tokenized the authors' way: the text is split at
  ``<image>``, each chunk tokenized on its own with BOS (legacy SentencePiece, so each chunk gets its
  own dummy-prefix space), later chunks' BOS dropped. ``<image>`` becomes one added token repeated
  576 times (transformers' form of the authors' ``-200`` splice; the result is the same embeddings,
  checked to ``max |Δlogit| = 0`` in the tests). Its new embedding row is zero and it is suppressed
  at generation, so it can never be produced.
* Images (radbench's ``llava-med-336`` preprocessing, ``PRESET`` below): padded to a square with
  the CLIP mean colour (122, 116, 104), or grey 114 for a greyscale (mode ``L``) file, as the
  authors' ``process_images`` does; the authors' random 0/1-pixel jitter of the paste offset is
  fixed at its lower value (the only random step; radbench stays deterministic under every
  protocol); resized to 336 bicubic; OpenAI CLIP mean/std. A non-square 16-bit file makes the
  authors' code fail (``Image.new`` in mode ``I;16`` with a colour tuple raises ``TypeError``);
  radbench clips it at 255 as CLIPImageProcessor's RGB conversion would and pads it with grey 114,
  like any single-channel file.
  3D studies: the middle axial slice (LLaVA-Med is 2D-only); ``slices=even:K`` or ``all`` gives
  several slices, each its own ``<image>``.
* Greedy decoding, EOS ``</s>``, the authors' ``max_new_tokens=1024`` unless the task sets one;
  the answer is the decoded new tokens, special tokens skipped, stripped. This is also
  ``protocol=authors``: the README's ``model_vqa.py --temperature 0.0`` is greedy (the script's own
  default, 0.2, samples), and the ``KeywordsStoppingCriteria`` it builds is never passed to
  ``generate``, so ``</s>`` is the only stop.

Not the authors' setup (they evaluate zero-shot, one image): several query images each get their
own ``<image>\\n`` line; few-shot exemplars become **text-only** examples inside the single user turn
(``Q: …\\nA: …`` blocks after the image), because LLaVA-1.5 models were not trained on interleaved
images. Exemplar images are not shown to the model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from radbench import safe_io
from radbench import images
from radbench.errors import UsageError
from radbench.models import decoding, loading, tiny
from radbench.models.args import AUTHORS, CheckpointArgs, find_in, require_file
from radbench.models.hub_args import hub_path
from radbench.models.checkpoint import Build, CheckpointAdapter
from radbench.models.tokenizers import add_special_tokens, assert_token_ids, load_llama_tokenizer
from radbench.types import ImageRef, Request, Turn

IMAGE_TOKEN = "<image>"
DEFAULT_MAX_NEW_TOKENS = 1024  # model_vqa.py
EOS_ID = 2
# Checkpoint keys with no counterpart in LlavaForConditionalGeneration, dropped silently: CLIP's
# position_ids buffer (saved by transformers 4.36) and rotary caches.
STALE_KEYS = (r".*position_ids$", r".*rotary_emb\.inv_freq$")


# -- key conversion ---------------------------------------------------------------------------------


def convert_key(key: str) -> str | None:
    """A released ``llava_mistral`` key -> its ``LlavaForConditionalGeneration`` key (``None``: unknown)."""
    if key == "lm_head.weight":
        return key
    if key.startswith("model.mm_projector."):
        index, _, rest = key[len("model.mm_projector."):].partition(".")
        layer = {"0": "linear_1", "2": "linear_2"}.get(index)
        return f"model.multi_modal_projector.{layer}.{rest}" if layer else None
    if key.startswith("model.vision_tower.vision_tower."):
        rest = key[len("model.vision_tower.vision_tower."):]
        return "model.vision_tower." + rest.removeprefix("vision_model.")
    if key.startswith("model."):
        return "model.language_model." + key[len("model."):]
    return None


def convert_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        new = convert_key(key)
        out[new if new is not None else key] = value  # unknown keys stay, so the key check names them
    return out


# -- configuration ----------------------------------------------------------------------------------


def vision_config_from_weights(state: Mapping[str, torch.Tensor], source: Path) -> Any:
    """The CLIP tower's config read off its weights (the released config names only a hub id)."""
    from transformers import CLIPVisionConfig

    prefix = "model.vision_tower."
    try:
        patch = state[prefix + "embeddings.patch_embedding.weight"]
        positions = state[prefix + "embeddings.position_embedding.weight"].shape[0]
        fc1 = state[prefix + "encoder.layers.0.mlp.fc1.weight"]
    except KeyError:
        raise UsageError(
            f"model 'llava-med': {source} holds no vision tower weights; pass --model-args vision_path=DIR "
            "(a local copy of openai/clip-vit-large-patch14-336)"
        ) from None
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k)))
    hidden, size = patch.shape[0], patch.shape[-1]
    side = math.isqrt(positions - 1)
    return CLIPVisionConfig(
        hidden_size=hidden, intermediate_size=fc1.shape[0], num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64), image_size=side * size, patch_size=size,
        hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )


def load_vision_path(folder: Path) -> tuple[Any, dict[str, torch.Tensor]]:
    """A local CLIP folder (``CLIPModel`` or ``CLIPVisionModel`` files) -> its vision config and weights."""
    from transformers import CLIPVisionConfig

    weights = find_in("llava-med", "vision_path", folder, ("model.safetensors", "pytorch_model.bin"),
                         "a CLIP folder with model.safetensors or pytorch_model.bin")
    raw = loading.load_state_dict(weights, "llava-med")
    state = {}
    for key, value in raw.items():
        if key.startswith(("text_model.", "visual_projection", "text_projection", "logit_scale")):
            continue  # a full CLIPModel: only the vision half is used
        state["model.vision_tower." + key.removeprefix("vision_model.")] = value
    config_file = weights.parent / "config.json"
    if config_file.is_file():
        data = safe_io.read_json_object(config_file, "model 'llava-med'")
        vision = data.get("vision_config", data)
        allowed = set(CLIPVisionConfig().to_dict())
        return CLIPVisionConfig(**{k: v for k, v in vision.items() if k in allowed}), state
    return vision_config_from_weights(state, weights), state


def llava_config(meta: Mapping[str, Any], vision: Any, image_token_id: int) -> Any:
    """``LlavaConfig`` from the released ``config.json`` (Mistral fields + ``mm_*`` fields)."""
    from transformers import LlavaConfig, MistralConfig

    unsupported = {
        "mm_projector_type": "mlp2x_gelu", "mm_use_im_start_end": False, "mm_vision_select_feature": "patch",
    }
    for key, wanted in unsupported.items():
        if meta.get(key, wanted) != wanted:
            raise UsageError(f"model 'llava-med': config.json has {key}={meta[key]!r}; radbench supports {wanted!r}")
    text_fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                   "num_key_value_heads", "rms_norm_eps", "rope_theta", "max_position_embeddings",
                   "sliding_window", "hidden_act", "head_dim")
    text = MistralConfig(
        **{k: meta[k] for k in text_fields if k in meta},
        vocab_size=image_token_id + 1, bos_token_id=1, eos_token_id=EOS_ID, pad_token_id=0,
        tie_word_embeddings=bool(meta.get("tie_word_embeddings", False)),
    )
    patches = (vision.image_size // vision.patch_size) ** 2
    return LlavaConfig(
        vision_config=vision, text_config=text, image_token_id=image_token_id, projector_hidden_act="gelu",
        vision_feature_layer=int(meta.get("mm_vision_select_layer", -2)),
        vision_feature_select_strategy="default", image_seq_length=patches, multimodal_projector_bias=True,
    )


# -- preprocessing and prompts ----------------------------------------------------------------------


# radbench's ``llava-med-336`` preset, the authors' ``process_images`` with ``image_aspect_ratio: pad``:
# pad to a square in the file's own mode (grey 114 for mode L, the mean colour (122, 116, 104) otherwise),
# then CLIPImageProcessor: convert("RGB") -> shortest edge 336 bicubic -> centre crop (floor offsets)
# -> 1/255 -> Normalize(OpenAI).
PRESET = images.Preprocess("llava-med-336", 336, "pad-square", "bicubic", images.OPENAI_CLIP_MEAN,
                           images.OPENAI_CLIP_STD, grey_pad=True, crop_offset="floor")


def preprocess_spec(size: int, pad: bool, slices: str = "middle") -> images.Preprocess:
    """radbench's ``llava-med-336`` preset at the tower's size: pad to square with the CLIP mean colour or
    grey (``image_aspect_ratio: pad``; plain shortest-edge resize and centre crop otherwise), bicubic,
    OpenAI CLIP mean/std; a 3D study gives the slices ``slices`` picks (default: the middle one)."""
    spec = replace(PRESET, size=size, resize="pad-square" if pad else "shortest-edge-crop")
    return spec.with_slices(slices)


def prepare_images(refs: Sequence[ImageRef], spec: images.Preprocess) -> list[np.ndarray]:
    """Each image as ``(3, S, S)``; a volume contributes one such image per chosen slice."""
    out: list[np.ndarray] = []
    for ref in refs:
        array = images.prepare(ref, spec).array
        out.extend(array if array.ndim == 4 else [array])
    return out


def _text(turn: Turn) -> str:
    return "".join(s.text or "" for s in turn.segments if s.image is None).replace(IMAGE_TOKEN, "").strip()


def render_prompt(request: Request, n_images: int | None = None) -> str:
    """``[INST] <image>\\n{question} [/INST]``, with text-only exemplars after the image lines.

    ``n_images``: how many images the query's references became (a volume can give several slices).
    """
    query = request.query
    message = f"{IMAGE_TOKEN}\n" * (len(query.images) if n_images is None else n_images)
    if request.exemplars:
        message += "".join(f"Q: {_text(t)}\nA: {t.answer or ''}\n\n" for t in request.exemplars)
    message += _text(query)
    return f"[INST] {message} [/INST]"


def tokenize_with_images(tokenizer: Any, prompt: str, image_token_id: int, image_tokens: int) -> list[int]:
    """``tokenizer_image_token``: chunks tokenized separately, one BOS, ``<image>`` expanded in place."""
    chunks = [tokenizer(chunk)["input_ids"] for chunk in prompt.split(IMAGE_TOKEN)]
    ids: list[int] = []
    for index, chunk in enumerate(chunks):
        if index:
            ids.extend([image_token_id] * image_tokens)
            chunk = chunk[1:] if chunk and chunk[0] == tokenizer.bos_token_id else chunk
        ids.extend(chunk)
    return ids


# -- the adapter ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlavaMedArgs(CheckpointArgs):
    """``checkpoint=`` the released folder; ``vision_path=`` a local CLIP ViT-L/14-336 folder (default:
    the tower inside the shards); ``slices=`` which slices of a 3D study are shown (middle, even:K, all).
    Both keys take Hub repo ids; ``checkpoint`` defaults to the released ``microsoft/llava-med-v1.5-mistral-7b``."""

    checkpoint: str | None = hub_path("microsoft/llava-med-v1.5-mistral-7b",
                                      patterns=("*.json", "*.safetensors", "tokenizer.model"), locate=("config.json",))
    vision_path: str | None = hub_path(patterns=("*.json", "model.safetensors"))
    slices: str = "middle"


class LlavaMedAdapter(CheckpointAdapter):
    """LLaVA-Med v1.5 through ``LlavaForConditionalGeneration``; see the module docstring."""

    name = "llava-med"
    version = "1"
    Args = LlavaMedArgs

    def __init__(self, model: Any, tokenizer: Any, build: Build, fingerprint: str, source: dict[str, Any],
                 spec: images.Preprocess) -> None:
        super().__init__(model, tokenizer, build, fingerprint, source, spec)
        self.image_token_id = model.config.image_token_id
        self.image_tokens = model.config.image_seq_length

    def split_points(self) -> tuple[torch.nn.Module, str, torch.nn.Module]:
        return self.model, "model.language_model.layers", self.model

    @classmethod
    def build_tiny(cls, args: LlavaMedArgs, build: Build) -> "LlavaMedAdapter":
        """The same architecture at toy sizes (CLIP 64-wide on 28 px, Mistral 64-wide), seeded."""
        from transformers import LlavaForConditionalGeneration

        tokenizer = prepare_tokenizer(tiny.tiny_llama_tokenizer(cls.name))
        meta = tiny_meta(len(tokenizer) - 1)
        vision = tiny.tiny_clip_vision_config(hidden_size=64, intermediate_size=64, num_attention_heads=1)
        config = llava_config(meta, vision, tokenizer.convert_tokens_to_ids(IMAGE_TOKEN))
        with tiny.seeded(build.seed):
            model = LlavaForConditionalGeneration(config)
        zero_image_row(model, config.image_token_id)
        model.to(device=build.device, dtype=build.dtype)
        spec = preprocess_spec(vision.image_size, pad=True, slices=args.slices)
        fingerprint = cls.tiny_identity(config.to_dict(), build, spec)
        return cls(model, tokenizer, build, fingerprint, {"preset": "tiny-random", "seed": build.seed}, spec)

    @classmethod
    def load_released(cls, args: LlavaMedArgs, build: Build) -> "LlavaMedAdapter":
        """``checkpoint=`` the folder of ``microsoft/llava-med-v1.5-mistral-7b`` (shards, config, tokenizer)."""
        from transformers import LlavaForConditionalGeneration

        expected = "the microsoft/llava-med-v1.5-mistral-7b folder (config.json, model-*.safetensors, tokenizer.model)"
        folder = require_file(cls.name, "checkpoint", args.checkpoint, expected)
        folder = folder if folder.is_dir() else folder.parent
        config_file = find_in(cls.name, "checkpoint", folder, ("config.json",), expected)
        meta = safe_io.read_json_object(config_file, "model 'llava-med'")
        if meta.get("model_type") not in ("llava_mistral", "llava_llama", "llava"):
            raise UsageError(f"model 'llava-med': {config_file} has model_type={meta.get('model_type')!r}, "
                             "expected llava_mistral (the original LLaVA-Med release, not a llava-hf conversion)")
        shards = checkpoint_shards(folder)
        tokenizer = prepare_tokenizer(load_llama_tokenizer(cls.name, folder))
        image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if image_token_id != int(meta.get("vocab_size", image_token_id)):
            raise UsageError(f"model 'llava-med': tokenizer has {image_token_id} tokens but config.json says "
                             f"vocab_size={meta.get('vocab_size')}")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(convert_state_dict(loading.load_state_dict(shard, cls.name)))
        files = [*shards, config_file, folder / "tokenizer.model"]
        if args.vision_path:
            vision_dir = require_file(cls.name, "vision_path", args.vision_path, "a local CLIP ViT-L/14-336 folder")
            vision, vision_state = load_vision_path(vision_dir)
            state = {k: v for k, v in state.items() if not k.startswith("model.vision_tower.")} | vision_state
            files += sorted(p for p in (vision_dir if vision_dir.is_dir() else vision_dir.parent).iterdir() if p.is_file())
        else:
            vision = vision_config_from_weights(state, folder)
        config = llava_config(meta, vision, image_token_id)
        for key in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            if key in state and state[key].shape[0] == image_token_id:  # grow by the zero <image> row
                state[key] = torch.cat([state[key], state[key].new_zeros((1, state[key].shape[1]))])
        with loading.fast_init(build.device, build.dtype):
            model = LlavaForConditionalGeneration(config)
        report = loading.load_checked(model, state, model=cls.name, source=folder, stale=STALE_KEYS)
        spec = preprocess_spec(vision.image_size, pad=meta.get("image_aspect_ratio", "pad") == "pad",
                               slices=args.slices)
        fingerprint = cls.weights_identity(files, args, build, spec)
        source = {"checkpoint": str(folder), "vision": args.vision_path or "inside the shards",
                  "keys": report.to_json()}
        return cls(model, tokenizer, build, fingerprint, source, spec)

    def decoding_facts(self) -> dict[str, Any]:
        return {
            "decoding": {"greedy": True, "eos_token_id": EOS_ID, "default_max_new_tokens": DEFAULT_MAX_NEW_TOKENS,
                         **({"authors_settings_override_gen_kwargs": {"num_beams": 1, "max_new_tokens":
                             DEFAULT_MAX_NEW_TOKENS}} if self.protocol == AUTHORS else {})},
            "prompt": "[INST] <image>\\n{question} [/INST]; few-shot exemplars as text-only Q:/A: blocks",
        }

    def encode(self, request: Request) -> tuple[list[int], list[np.ndarray]]:
        """Token ids (``<image>`` expanded) and the pixel arrays, one per ``<image>``, in order."""
        pixels = prepare_images(request.query.images, self.spec)
        prompt = render_prompt(request, len(pixels))
        return tokenize_with_images(self.tokenizer, prompt, self.image_token_id, self.image_tokens), pixels

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request]) -> list[str]:
        # protocol=authors: model_vqa.py's greedy 1024 new tokens (num_beams 1), whatever the task asks
        overrides = {"num_beams": 1, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS} if self.protocol == AUTHORS else {}
        decodings = [decoding.decoding_of(self.name, r.gen_kwargs, DEFAULT_MAX_NEW_TOKENS, overrides) for r in requests]
        beams = decoding.batch_beams(self.name, decodings)
        encoded = [self.encode(r) for r in requests]
        input_ids, mask = decoding.left_pad([ids for ids, _ in encoded], pad_id=0, device=self.device)
        # row order = the order of <image> runs; beam search runs each row num_beams times, in row order
        images = [p for _, pixels in encoded for _ in range(beams) for p in pixels]
        pixel_values = (torch.from_numpy(np.stack(images)).to(self.device, self.dtype) if images else None)
        model = self.model
        cache_name = decoding.cache_argument(model)

        def step(ids, embeds, attention_mask, position_ids, cache):  # type: ignore[no-untyped-def]
            extra = {"pixel_values": pixel_values} if cache is None and pixel_values is not None else {}
            out = model(input_ids=ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=True,
                        logits_to_keep=1, **{cache_name: cache}, **extra)
            return out.logits[:, -1, :], decoding.returned_cache(out)

        new_tokens = decoding.generate(step, input_ids=input_ids, attention_mask=mask, decodings=decodings,
                                       eos_token_ids=[EOS_ID], suppress_token_ids=[self.image_token_id])
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in new_tokens]


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Add ``<image>`` after the base vocabulary (id 32000 for the released tokenizer)."""
    base = len(tokenizer)
    add_special_tokens(tokenizer, [IMAGE_TOKEN], strip=False)
    assert_token_ids("llava-med", tokenizer, {IMAGE_TOKEN: base})
    return tokenizer


def zero_image_row(model: Any, image_token_id: int) -> None:
    """The ``<image>`` row is never trained: zero it (its logit is also suppressed at generation)."""
    with torch.no_grad():
        model.get_input_embeddings().weight[image_token_id].zero_()
        model.get_output_embeddings().weight[image_token_id].zero_()


def checkpoint_shards(folder: Path) -> list[Path]:
    """The safetensors files named by ``model.safetensors.index.json`` (or one ``model.safetensors``)."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = safe_io.read_json_object(index, "model 'llava-med'").get("weight_map")
        if not isinstance(weight_map, dict):
            raise UsageError(f"model 'llava-med': {index} has no weight_map object")
        names = sorted({str(v) for v in weight_map.values()})
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise UsageError(f"model 'llava-med': {folder} lacks {', '.join(missing)} (listed in {index.name})")
        return [folder / n for n in names]
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    raise UsageError(f"model 'llava-med': {folder} lacks model.safetensors.index.json and its shards")


def tiny_meta(vocab_size: int) -> dict[str, Any]:
    """A ``llava_mistral`` ``config.json`` at toy sizes (the released one: 4096 wide, 32 layers)."""
    return {
        "model_type": "llava_mistral", "architectures": ["LlavaMistralForCausalLM"], "vocab_size": vocab_size,
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "rope_theta": 1000000.0, "max_position_embeddings": 2048,
        "sliding_window": None, "tie_word_embeddings": False, "image_aspect_ratio": "pad",
        "mm_projector_type": "mlp2x_gelu", "mm_vision_select_layer": -2, "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False, "mm_use_im_patch_token": False, "mm_hidden_size": 64,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
    }
