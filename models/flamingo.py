"""OpenFlamingo and Med-Flamingo: registered as ``openflamingo`` and ``medflamingo``.

Both are the OpenFlamingo architecture (mlfoundations/open_flamingo, commit 655f693; Med-Flamingo
pins open-flamingo 0.0.2): a frozen CLIP ViT-L/14, a perceiver resampler (64 latents per image),
and gated cross-attention blocks inserted before every n-th decoder layer of a frozen causal LM.
Neither the ``open-flamingo`` nor the ``open_clip`` package is used (they downgrade torch or need
torchvision); the modules are rebuilt here with the authors' attribute names, so the released
files load with a plain ``load_state_dict``:

    perceiver.*                                        PerceiverResampler(dim=1024, depth=6)
    lang_encoder.<layers>.{i}.gated_cross_attn_layer.* GatedCrossAttentionBlock, i where (i+1) % n == 0
    lang_encoder.<input embeddings>.weight             vocabulary + <|endofchunk|>, <image>, <PAD>

``<layers>`` is ``model.layers`` (LLaMA), ``transformer.blocks`` (MPT) or ``gpt_neox.layers``.
The checkpoints hold nothing else: the LM comes from ``lm_path`` (a transformers folder, never
remote code) and CLIP from ``vision_path``. CLIP's patch tokens are
``CLIPVisionModel(...).last_hidden_state[:, 1:]``, i.e. without ``ln_post``, which is what
open_clip <= 2.22 returned when these models were trained (model-adapters.md §0.6).

Which image text attends to differs between releases (model-adapters.md §1.7):

* open-flamingo 2.x (``legacy_media_attention=0``, OpenFlamingo's default): each token attends to
  the latents of the most recent preceding ``<image>``; generated tokens keep attending to the
  last image.
* open-flamingo 0.0.2 (``legacy_media_attention=1``, Med-Flamingo's default): an ``<image>`` token
  attends to its own image, other text to the *next* image, text after the last image and every
  generated token to no image at all.

The lm_head rows of the three added tokens were never trained or saved; they are zeros here (a
documented, deterministic choice), and ``<image>``/``<PAD>`` are never generated.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from einops import rearrange, repeat
from torch import nn

from radbench import images
from radbench.errors import SampleError, UsageError
from radbench.models import hf
from radbench.types import ImageRef, Request

EOC, IMAGE, PAD = "<|endofchunk|>", "<image>", "<PAD>"
# Where each LM family keeps its decoder layers and input embeddings (open_flamingo factory.py).
LM_LAYOUTS: dict[str, tuple[str, str]] = {
    "llama": ("model.layers", "model.embed_tokens"),
    "mpt": ("transformer.blocks", "transformer.wte"),
    "gpt_neox": ("gpt_neox.layers", "gpt_neox.embed_in"),
}
# Keys the training code saved that are not weights of this model (dropped, never loaded).
STALE_KEYS = (
    r".*\.rotary_emb\.inv_freq$",  # transformers 4.28-4.30 saved RoPE buffers
    r"vision_encoder\.",  # 0.0.x kept CLIP buffers; CLIP weights come from vision_path
)


@dataclass(frozen=True)
class FlamingoConfig:
    """Sizes of the Flamingo modules; the defaults are the released ones (ViT-L/14 features)."""

    cross_attn_every_n_layers: int = 4
    vis_dim: int = 1024
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    num_latents: int = 64
    xattn_heads: int = 8
    xattn_dim_head: int = 64
    ff_mult: int = 4

    @classmethod
    def tiny(cls, vis_dim: int) -> "FlamingoConfig":
        return cls(cross_attn_every_n_layers=2, vis_dim=vis_dim, perceiver_depth=1, perceiver_heads=2,
                   perceiver_dim_head=8, xattn_heads=2, xattn_dim_head=8)


# ---------------------------------------------------------------------------------------------
# Perceiver resampler (helpers.py; RadFM uses the same module)
# ---------------------------------------------------------------------------------------------


def feed_forward(dim: int, mult: int = 4) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class PerceiverAttention(nn.Module):
    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.scale, self.heads = dim_head**-0.5, heads
        self.norm_media = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """Latents attend to ``cat(media, latents)``, as in the released code."""
        x, latents = self.norm_media(x), self.norm_latents(latents)
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat((x, latents), dim=-2)).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b t n (h d) -> b h t n d", h=self.heads) for t in (q, k, v))
        sim = torch.einsum("... i d, ... j d -> ... i j", q * self.scale, k)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        out = torch.einsum("... i j, ... j d -> ... i d", attn, v)
        return self.to_out(rearrange(out, "b h t n d -> b t n (h d)"))


class PerceiverResampler(nn.Module):
    """``(b, T, F, v, d)`` media features -> ``(b, T, num_latents, d)`` (no media/frame embeddings)."""

    def __init__(self, dim: int, depth: int, dim_head: int, heads: int, num_latents: int, ff_mult: int = 4) -> None:
        super().__init__()
        self.latents = nn.Parameter(torch.randn(num_latents, dim))
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads), feed_forward(dim, ff_mult)]) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        x = rearrange(x, "b T F v d -> b T (F v) d")
        latents = repeat(self.latents, "n d -> b T n d", b=b, T=t)
        for attn, ff in self.layers:  # type: ignore[misc]
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm(latents)


# ---------------------------------------------------------------------------------------------
# Gated cross-attention and the wrapped decoder layers (helpers.py, flamingo_lm.py)
# ---------------------------------------------------------------------------------------------


class MaskedCrossAttention(nn.Module):
    """Text attends to the latents of exactly one image, chosen by ``text_time`` (0 = none)."""

    def __init__(self, dim: int, dim_visual: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.scale, self.heads = dim_head**-0.5, heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim_visual, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, media: torch.Tensor, text_time: torch.Tensor) -> torch.Tensor:
        n_img, n_lat = media.shape[1:3]
        q = self.to_q(self.norm(x))
        k, v = self.to_kv(rearrange(media, "b t n d -> b (t n) d")).chunk(2, dim=-1)
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in (q, k, v))
        sim = torch.einsum("... i d, ... j d -> ... i j", q * self.scale, k)
        media_time = repeat(torch.arange(n_img, device=x.device) + 1, "j -> (j n)", n=n_lat)
        allowed = text_time[:, None, :, None] == media_time[None, None, None, :]
        sim = sim.masked_fill(~allowed, -torch.finfo(sim.dtype).max)
        attn = (sim - sim.amax(dim=-1, keepdim=True)).softmax(dim=-1)
        attn = attn.masked_fill((text_time == 0)[:, None, :, None], 0.0)
        out = torch.einsum("... i j, ... j d -> ... i d", attn, v)
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class GatedCrossAttentionBlock(nn.Module):
    def __init__(self, dim: int, dim_visual: int, dim_head: int, heads: int, ff_mult: int) -> None:
        super().__init__()
        self.attn = MaskedCrossAttention(dim, dim_visual, dim_head, heads)
        self.attn_gate = nn.Parameter(torch.tensor([0.0]))
        self.ff = feed_forward(dim, ff_mult)
        self.ff_gate = nn.Parameter(torch.tensor([0.0]))

    def forward(self, x: torch.Tensor, media: torch.Tensor, text_time: torch.Tensor) -> torch.Tensor:
        x = self.attn(x, media, text_time) * self.attn_gate.tanh() + x
        return self.ff(x) * self.ff_gate.tanh() + x


@dataclass
class MediaState:
    """What the gated layers condition on during one forward: set by :class:`Flamingo` per step."""

    media: torch.Tensor | None = None  # (B, T_img, latents, vis_dim)
    text_time: torch.Tensor | None = None  # (B, T_txt): 1-based image index each token attends, 0 none


class FlamingoLayer(nn.Module):
    """A decoder layer with an optional gated cross-attention block run before it."""

    def __init__(self, gated_cross_attn_layer: GatedCrossAttentionBlock | None, decoder_layer: nn.Module,
                 state: MediaState) -> None:
        super().__init__()
        self.gated_cross_attn_layer = gated_cross_attn_layer
        self.decoder_layer = decoder_layer
        self.state = state

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if self.gated_cross_attn_layer is not None:
            if self.state.media is None or self.state.text_time is None:
                raise RuntimeError("Flamingo layer called without media conditioning")
            hidden_states = self.gated_cross_attn_layer(hidden_states, self.state.media, self.state.text_time)
        return self.decoder_layer(hidden_states, *args, **kwargs)


def text_time(media_locations: torch.Tensor, legacy: bool) -> torch.Tensor:
    """The image (1-based) each prompt token attends to, or 0, for either media-attention semantics."""
    time = media_locations.long().cumsum(dim=-1)
    if not legacy:
        return time  # 2.x: the most recent preceding <image>
    # 0.0.2 with attend_previous=False: non-image text moves on to the next image; past the last, none.
    time = time + (~media_locations).long()
    count = media_locations.long().sum(dim=-1, keepdim=True)
    return time.masked_fill(time > count, 0)


class Flamingo(nn.Module):
    """The OpenFlamingo model: ``vision_encoder`` (HF CLIP), ``perceiver``, wrapped ``lang_encoder``."""

    def __init__(self, vision_encoder: nn.Module, lang_encoder: nn.Module, cfg: FlamingoConfig,
                 media_token_id: int, legacy_media_attention: bool) -> None:
        super().__init__()
        self.cfg = cfg
        self.media_token_id = media_token_id
        self.legacy = legacy_media_attention
        self.state = MediaState()
        self.vision_encoder = vision_encoder
        self.perceiver = PerceiverResampler(cfg.vis_dim, cfg.perceiver_depth, cfg.perceiver_dim_head,
                                            cfg.perceiver_heads, cfg.num_latents, cfg.ff_mult)
        self.lang_encoder = lang_encoder
        layers_attr, _ = LM_LAYOUTS[lang_encoder.config.model_type]
        lm_dim = getattr(lang_encoder.config, "d_model", None) or lang_encoder.config.hidden_size
        parent_path, _, name = layers_attr.rpartition(".")
        parent = lang_encoder.get_submodule(parent_path)
        wrapped = [
            FlamingoLayer(
                GatedCrossAttentionBlock(lm_dim, cfg.vis_dim, cfg.xattn_dim_head, cfg.xattn_heads, cfg.ff_mult)
                if (i + 1) % cfg.cross_attn_every_n_layers == 0 else None,
                layer, self.state,
            )
            for i, layer in enumerate(getattr(parent, name))
        ]
        setattr(parent, name, nn.ModuleList(wrapped))
        self._lm_step = hf.hf_step(lang_encoder)
        self._prompt_counts: torch.Tensor | None = None

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """``(T_img, 3, H, W)`` (one sample) -> ``(T_img, latents, vis_dim)``: CLIP patch tokens, no ln_post."""
        tokens = self.vision_encoder(pixel_values=pixels).last_hidden_state[:, 1:]
        return self.perceiver(tokens[None, :, None])[0]

    def condition(self, media: torch.Tensor | None) -> None:
        """Set the batch's media ``(B, T_img, latents, vis_dim)`` (zero rows pad samples with fewer images).

        ``None`` clears it, so a stale batch can never condition the next one.
        """
        self.state.media = media
        self.state.text_time = None
        self._prompt_counts = None

    def step(self, input_ids: torch.Tensor, inputs_embeds: None, attention_mask: torch.Tensor,
             position_ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
        """One :func:`~radbench.models.hf.greedy_generate` step: media locations, then the LM."""
        locations = input_ids == self.media_token_id
        if cache is None:  # the prompt
            self._prompt_counts = locations.long().sum(dim=-1, keepdim=True)
            self.state.text_time = text_time(locations, self.legacy)
        elif self.legacy:  # 0.0.2: a generated token's own (empty) media locations -> no image
            self.state.text_time = text_time(locations, legacy=True)
        else:  # 2.x use_cached_media: attend to the prompt's last image
            assert self._prompt_counts is not None
            self.state.text_time = self._prompt_counts.expand(-1, input_ids.shape[1])
        return self._lm_step(input_ids, None, attention_mask, position_ids, cache)


# ---------------------------------------------------------------------------------------------
# Loading: CLIP, the LM, the tokenizer, the checkpoint
# ---------------------------------------------------------------------------------------------


def openclip_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip / OpenAI ``visual.*`` keys -> transformers ``CLIPVisionModel`` keys (model-adapters.md §7.3)."""
    out: dict[str, torch.Tensor] = {}
    simple = {
        "conv1.weight": "embeddings.patch_embedding.weight",
        "class_embedding": "embeddings.class_embedding",
        "positional_embedding": "embeddings.position_embedding.weight",
    }
    for key, value in state.items():
        if not key.startswith("visual."):
            continue
        k = key[len("visual."):]
        if k in simple:
            out[simple[k]] = value
        elif k.startswith("ln_pre."):
            out["pre_layrnorm." + k[len("ln_pre."):]] = value
        elif k.startswith("ln_post."):
            out["post_layernorm." + k[len("ln_post."):]] = value
        elif m := re.match(r"transformer\.resblocks\.(\d+)\.(.+)", k):
            i, rest = m.groups()
            prefix = f"encoder.layers.{i}."
            if rest.startswith("attn.in_proj_"):
                kind = rest[len("attn.in_proj_"):]
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3, dim=0)):
                    out[f"{prefix}self_attn.{name}.{kind}"] = part
            else:
                for old, new in (("attn.out_proj.", "self_attn.out_proj."), ("ln_1.", "layer_norm1."),
                                 ("ln_2.", "layer_norm2."), ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2.")):
                    if rest.startswith(old):
                        out[prefix + new + rest[len(old):]] = value
    return out  # visual.proj (the contrastive projection) is unused by Flamingo


def load_clip(model: str, path: Path, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """CLIP ViT-L/14 from a transformers folder (``openai/clip-vit-large-patch14``) or open_clip weights."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UsageError(f"model {model!r}: vision_path={path} has no config.json (expected the "
                             "openai/clip-vit-large-patch14 transformers folder, or an open_clip weights file)")
        try:
            clip = CLIPVisionModel.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise UsageError(f"model {model!r}: cannot load CLIP from {path}: {hf.first_line(exc)}") from exc
        return clip.to(device).eval()
    state = openclip_to_hf(hf.load_state_dict(path, model))
    if "embeddings.patch_embedding.weight" not in state:
        raise UsageError(f"model {model!r}: vision_path={path} has no open_clip 'visual.*' weights")
    width, _, patch, _ = state["embeddings.patch_embedding.weight"].shape
    grid = int(round((state["embeddings.position_embedding.weight"].shape[0] - 1) ** 0.5))
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
    cfg = CLIPVisionConfig(hidden_size=width, intermediate_size=state["encoder.layers.0.mlp.fc1.weight"].shape[0],
                           num_hidden_layers=layers, num_attention_heads=width // 64, image_size=grid * patch,
                           patch_size=patch, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    with hf.fast_init(device, dtype):
        clip = CLIPVisionModel(cfg)
    hf.load_checked(clip, state, model=model, source=path)
    return clip.eval()


def load_lm(model: str, lm_dir: Path, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """The causal LM from a local transformers folder; LLaMA, MPT and GPT-NeoX, never remote code."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if not (lm_dir / "config.json").is_file():
        raise UsageError(f"model {model!r}: lm_path={lm_dir} has no config.json (expected a transformers "
                         "folder with config.json, weights and tokenizer, e.g. LLaMA-7B converted to HF format)")
    try:
        config = AutoConfig.from_pretrained(str(lm_dir), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"model {model!r}: cannot read {lm_dir}/config.json: {hf.first_line(exc)} (models that "
                         "need remote code, such as mpt-1b-redpajama's MosaicGPT, are not supported)") from exc
    if config.model_type not in LM_LAYOUTS:
        raise UsageError(f"model {model!r}: lm_path is a {config.model_type!r} model; supported: "
                         f"{', '.join(LM_LAYOUTS)}")
    if config.model_type == "llama":
        config.bos_token_id, config.eos_token_id, config.pad_token_id = 1, 2, 0  # decapoda configs say 0/1/-1
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(lm_dir), config=config, local_files_only=True, dtype=dtype)
    except (OSError, ValueError) as exc:
        raise UsageError(f"model {model!r}: cannot load the LM weights in {lm_dir}: {hf.first_line(exc)}") from exc
    return lm.to(device).eval()


def prepare_tokenizer(model: str, tokenizer: Any, llama: bool) -> Any:
    """``create_model_and_transforms``: add ``<|endofchunk|>``, ``<image>``, then ``<PAD>`` if there is no pad.

    LLaMA's tokenizer was the slow one then (specials eat surrounding whitespace: ``strip=True``);
    MPT/NeoX tokenizers were fast (``strip=False``). Ids follow the base vocabulary in that order.
    """
    base, present = len(tokenizer), tokenizer.get_vocab()
    hf.add_special_tokens(tokenizer, [EOC, IMAGE], strip=llama)
    # A tokenizer saved after this step already holds the tokens; open_flamingo keeps their ids.
    expected = {t: base + i for i, t in enumerate(t for t in (EOC, IMAGE) if t not in present)}
    if tokenizer.pad_token is None:  # LLaMA-1's and NeoX's tokenizers have none; OpenFlamingo added <PAD>
        from tokenizers import AddedToken

        tokenizer.add_special_tokens({"pad_token": AddedToken(PAD, lstrip=llama, rstrip=llama, special=True,
                                                              normalized=False)})
        if PAD not in present:
            expected[PAD] = base + len(expected)
    hf.assert_token_ids(model, tokenizer, expected)
    tokenizer.padding_side = "left"
    return tokenizer


def load_tokenizer(model: str, lm_dir: Path, llama: bool) -> Any:
    if llama:
        return hf.load_llama_tokenizer(model, lm_dir)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(lm_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"model {model!r}: cannot load the tokenizer in {lm_dir}: {hf.first_line(exc)}") from exc


def grow_vocab(lm: nn.Module, size: int) -> None:
    """``resize_token_embeddings``; new output rows are zeros (never trained, never saved)."""
    old = lm.get_output_embeddings().weight.shape[0]
    lm.resize_token_embeddings(size, mean_resizing=False)
    if size > old:
        with torch.no_grad():
            lm.get_output_embeddings().weight[old:] = 0


def normalize_checkpoint(state: dict[str, torch.Tensor], layers_attr: str) -> dict[str, torch.Tensor]:
    """Map the ``lang_encoder.gated_cross_attn_layers.{i}`` alias onto ``<layers>.{i}.gated_cross_attn_layer``.

    0.0.x saved each block under both names (one module registered twice); 2.x saved only the
    second. ``old_decoder_blocks`` aliases are frozen LM weights and are dropped.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if m := re.match(r"lang_encoder\.gated_cross_attn_layers\.(\d+)\.(.+)", key):
            out.setdefault(f"lang_encoder.{layers_attr}.{m.group(1)}.gated_cross_attn_layer.{m.group(2)}", value)
        elif not key.startswith("lang_encoder.old_decoder_blocks."):
            out[key] = value
    return out


def infer_every_n(model: str, state: dict[str, torch.Tensor], layers_attr: str, n_layers: int) -> int:
    """``cross_attn_every_n_layers`` from which layers the checkpoint has blocks for (1, 2 or 4 released)."""
    pattern = re.compile(rf"lang_encoder\.{re.escape(layers_attr)}\.(\d+)\.gated_cross_attn_layer\.")
    found = sorted({int(m.group(1)) for k in state if (m := pattern.match(k))})
    if not found:
        raise UsageError(f"model {model!r}: the checkpoint has no gated cross-attention keys under "
                         f"lang_encoder.{layers_attr} (is lm_path the LM this checkpoint was trained on?)")
    n = found[0] + 1
    if found != [i for i in range(n_layers) if (i + 1) % n == 0]:
        raise UsageError(f"model {model!r}: checkpoint cross-attention layers {found} do not fit a "
                         f"{n_layers}-layer LM with one block every {n} layers")
    return n


# ---------------------------------------------------------------------------------------------
# Images and prompts
# ---------------------------------------------------------------------------------------------


def preprocess_spec(size: int) -> images.Preprocess:
    """radbench's ``clip-224`` preset at ``size``: open_clip's ViT-L-14 eval transform (bicubic
    shortest-edge resize, center crop, OpenAI mean/std); a 3D study shows its middle slice."""
    return replace(images.PRESETS["clip-224"], size=size)


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


def medflamingo_answer(text: str, task: str) -> str:
    """``clean_generation`` (drop ``<unk> ``), then cut at a new line or the next ``Question:``."""
    text = text.replace("<unk> ", "")
    return re.split(r"\n|Question:", text, maxsplit=1)[0].strip()


# ---------------------------------------------------------------------------------------------
# The adapters
# ---------------------------------------------------------------------------------------------

ARGS = ("checkpoint", "lm_path", "vision_path", "dtype", "device", "device_map", "gpus", "preset", "seed",
        "batch_size", "full_fingerprint", "legacy_media_attention")


class FlamingoAdapter(hf.CheckpointAdapter):
    """Shared loading and batched generation; subclasses fix the checkpoint file, prompt and defaults."""

    checkpoint_file = ""
    checkpoint_hint = ""
    legacy_default = False
    default_max_new_tokens = 10

    def __init__(self, model: Flamingo, tokenizer: Any, image_size: int, device: torch.device, dtype: torch.dtype,
                 fingerprint: str, source: dict[str, Any], max_batch_size: int) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.spec = preprocess_spec(image_size)
        self.device = device
        self.dtype = dtype
        self._fingerprint = fingerprint
        self.source = source
        self.max_batch_size = max_batch_size
        self.eoc_id = tokenizer.convert_tokens_to_ids(EOC)
        self.suppress = [tokenizer.convert_tokens_to_ids(IMAGE)]
        if PAD in tokenizer.get_vocab():
            self.suppress.append(tokenizer.convert_tokens_to_ids(PAD))

    def render(self, request: Request) -> tuple[str, list[ImageRef]]:
        raise NotImplementedError

    def postprocess(self, text: str, task: str) -> str:
        raise NotImplementedError

    @classmethod
    def from_args(cls, **model_args: str) -> "FlamingoAdapter":
        hf.check_model_args(cls.name, model_args, ARGS)
        dtype = hf.parse_dtype(cls.name, model_args.get("dtype"))
        device, devices = hf.parse_devices(cls.name, model_args)
        batch = hf.parse_int(cls.name, "batch_size", model_args.get("batch_size"), 8)
        legacy = hf.parse_bool(cls.name, "legacy_media_attention", model_args.get("legacy_media_attention"),
                               cls.legacy_default)
        seed = hf.tiny_seed(cls.name, model_args)
        preset = model_args.get("preset")
        if preset:
            if preset != "tiny-random":
                raise UsageError(f"model {cls.name!r}: preset={preset!r} is unknown (the only preset is tiny-random)")
            adapter = cls.tiny_random(device=device, dtype=dtype, legacy=legacy, max_batch_size=batch, seed=seed)
            return adapter.spread(devices)
        return cls.from_checkpoint(model_args, device, dtype, legacy, batch).spread(devices)

    def split_points(self) -> tuple[torch.nn.Module, str, torch.nn.Module]:
        # The gated cross-attention blocks live inside the wrapped decoder layers, so they move with
        # them; accelerate's hooks on their submodules bring the media to the layer's GPU.
        layers_attr, _ = LM_LAYOUTS[self.model.lang_encoder.config.model_type]
        return self.model, f"lang_encoder.{layers_attr}", self.model.lang_encoder

    @classmethod
    def tiny_random(cls, device: torch.device = torch.device("cpu"), dtype: torch.dtype = torch.float32,
                    legacy: bool | None = None, max_batch_size: int = 8, seed: int = 0) -> "FlamingoAdapter":
        """The same architecture at toy sizes (tiny LLaMA, tiny CLIP, 64 latents), seeded."""
        from transformers import CLIPVisionModel, LlamaForCausalLM

        from radbench.models import tiny

        legacy = cls.legacy_default if legacy is None else legacy
        tokenizer = prepare_tokenizer(cls.name, tiny.tiny_llama_tokenizer(cls.name), llama=True)
        vision_cfg = tiny.tiny_clip_vision_config()
        lm_cfg = tiny.tiny_llama_config(len(tokenizer))
        cfg = FlamingoConfig.tiny(vision_cfg.hidden_size)
        with tiny.seeded(seed):
            model = Flamingo(CLIPVisionModel(vision_cfg), LlamaForCausalLM(lm_cfg), cfg,
                             tokenizer.convert_tokens_to_ids(IMAGE), legacy)
        model.to(device=device, dtype=dtype)
        fingerprint = tiny.tiny_fingerprint(cls.name, {
            "flamingo": asdict(cfg), "clip": vision_cfg.to_dict(), "lm": lm_cfg.to_dict(),
            "legacy_media_attention": legacy, "dtype": hf.DTYPE_NAMES[dtype],
            "preprocess": preprocess_spec(vision_cfg.image_size).fingerprint(),
        }, seed)
        source = {"preset": "tiny-random", "legacy_media_attention": legacy}
        return cls(model, tokenizer, vision_cfg.image_size, device, dtype, fingerprint, source, max_batch_size)

    @classmethod
    def from_checkpoint(cls, model_args: dict[str, str], device: torch.device, dtype: torch.dtype, legacy: bool,
                        max_batch_size: int) -> "FlamingoAdapter":
        ckpt = hf.require_file(cls.name, "checkpoint", model_args.get("checkpoint"), cls.checkpoint_hint)
        weights = hf.find_in(cls.name, "checkpoint", ckpt, (cls.checkpoint_file,), cls.checkpoint_hint)
        lm_dir = hf.require_file(cls.name, "lm_path", model_args.get("lm_path"),
                                 "the LM folder in transformers format (config.json, weights, tokenizer)")
        vision = hf.require_file(cls.name, "vision_path", model_args.get("vision_path"),
                                 "CLIP ViT-L/14: the openai/clip-vit-large-patch14 transformers folder, or an "
                                 "open_clip ViT-L-14 weights file")
        lm = load_lm(cls.name, lm_dir, dtype, device)
        model_type = lm.config.model_type
        llama = model_type == "llama"
        tokenizer = prepare_tokenizer(cls.name, load_tokenizer(cls.name, lm_dir, llama), llama)
        clip = load_clip(cls.name, vision, dtype, device)
        layers_attr, embed_attr = LM_LAYOUTS[model_type]
        state = normalize_checkpoint(hf.load_state_dict(weights, cls.name), layers_attr)
        n_layers = len(lm.get_submodule(layers_attr))
        defaults = {"cross_attn_every_n_layers": infer_every_n(cls.name, state, layers_attr, n_layers),
                    "vis_dim": clip.config.hidden_size}
        overrides = hf.config_overrides(cls.name, weights.parent, [f.name for f in fields(FlamingoConfig)])
        cfg = replace(FlamingoConfig(), **{**defaults, **overrides})
        grow_vocab(lm, len(tokenizer))
        with hf.fast_init(device, dtype):  # the perceiver and gated blocks are filled from the checkpoint
            model = Flamingo(clip, lm, cfg, tokenizer.convert_tokens_to_ids(IMAGE), legacy)
        # The checkpoint must hold the perceiver, every gated block and the input embeddings; the rest
        # (LM decoder and head, CLIP) came from lm_path / vision_path.
        required = rf"^(?!perceiver\.|lang_encoder\.{re.escape(layers_attr)}\.\d+\.gated_cross_attn_layer\." \
                   rf"|lang_encoder\.{re.escape(embed_attr)}\.weight$)"
        report = hf.load_checked(model, state, model=cls.name, source=weights, stale=STALE_KEYS,
                                 not_in_checkpoint=[required])
        full = hf.parse_bool(cls.name, "full_fingerprint", model_args.get("full_fingerprint"), False)
        files = [weights, *weight_files(lm_dir), *(weight_files(vision) if vision.is_dir() else [vision])]
        weights_id = hf.cached_file_fingerprint(files, full=full)
        fingerprint = hf.stable_fingerprint(cls.name, weights_id, {
            "dtype": hf.DTYPE_NAMES[dtype], "legacy_media_attention": legacy, "flamingo": asdict(cfg),
            "preprocess": preprocess_spec(clip.config.image_size).fingerprint()})
        source = {"checkpoint": str(weights), "lm_path": str(lm_dir), "lm_type": model_type,
                  "vision_path": str(vision), "legacy_media_attention": legacy,
                  "cross_attn_every_n_layers": cfg.cross_attn_every_n_layers, "keys": report.to_json()}
        image_size = clip.config.image_size
        return cls(model.eval(), tokenizer, image_size, device, dtype, fingerprint, source, max_batch_size)

    def decoding_facts(self) -> dict[str, Any]:
        return {"decoding": {"greedy": True, "eos": EOC, "default_max_new_tokens": self.default_max_new_tokens,
                             "never_generated": [IMAGE, PAD], "new_lm_head_rows": "zeros"}}

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request]) -> list[str]:
        limits = [hf.max_new_tokens_of(self.name, r.gen_kwargs, self.default_max_new_tokens) for r in requests]
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
        input_ids, mask = hf.left_pad(ids, self.tokenizer.pad_token_id, self.device)
        self.model.condition(batch_media)
        try:
            new_tokens = hf.greedy_generate(self.model.step, input_ids=input_ids, attention_mask=mask,
                                            max_new_tokens=limits, eos_token_ids=[self.eoc_id],
                                            suppress_token_ids=self.suppress,
                                            pad_token_id=self.tokenizer.pad_token_id)
        finally:
            self.model.condition(None)
        return [self.postprocess(self.tokenizer.decode(t, skip_special_tokens=True), r.task)
                for t, r in zip(new_tokens, requests)]


def weight_files(folder: Path) -> list[Path]:
    """A transformers folder's weight and tokenizer files: what identifies the weights in it."""
    names = ("*.safetensors", "*.bin", "*.pt", "tokenizer.model", "tokenizer.json")
    return sorted({p for pattern in names for p in folder.glob(pattern) if p.is_file()})


class OpenFlamingoAdapter(FlamingoAdapter):
    """OpenFlamingo: v1 ``checkpoint.pt`` on LLaMA-7B, or a v2 checkpoint on HF-native MPT / RedPajama (NeoX).

    Prompt: the v2 eval VQA format (``Short answer:``); defaults as ``evaluate.py`` for VQA except
    beam search (radbench decodes greedily): ``max_new_tokens=5``.
    """

    name = "openflamingo"
    version = "1"
    checkpoint_file = "checkpoint.pt"
    checkpoint_hint = "OpenFlamingo's checkpoint.pt (e.g. from openflamingo/OpenFlamingo-9B-deprecated)"
    legacy_default = False
    default_max_new_tokens = 5

    def render(self, request: Request) -> tuple[str, list[ImageRef]]:
        return openflamingo_prompt(request, "Short answer:")

    def postprocess(self, text: str, task: str) -> str:
        return openflamingo_answer(text, task)


class MedFlamingoAdapter(FlamingoAdapter):
    """Med-Flamingo: ``model.pt`` on LLaMA-7B + CLIP ViT-L/14, open-flamingo 0.0.2 semantics by default.

    Prompt and decoding as ``scripts/demo.py``: system sentence, ``Question: ... Answer:`` turns,
    greedy, ``max_new_tokens=10``, EOS ``<|endofchunk|>``.
    """

    name = "medflamingo"
    version = "1"
    checkpoint_file = "model.pt"
    checkpoint_hint = "Med-Flamingo's model.pt (from med-flamingo/med-flamingo)"
    legacy_default = True
    default_max_new_tokens = 10

    def render(self, request: Request) -> tuple[str, list[ImageRef]]:
        return medflamingo_prompt(request)

    def postprocess(self, text: str, task: str) -> str:
        return medflamingo_answer(text, task)
