"""The OpenFlamingo architecture (mlfoundations/open_flamingo, commit 655f693), with the authors' attribute names.

Neither the ``open-flamingo`` nor the ``open_clip`` package is used (they downgrade torch or need
torchvision); the modules are rebuilt here with the names the released files use, so they load
with a plain ``load_state_dict``:

    perceiver.*                                        PerceiverResampler(dim=1024, depth=6)
    lang_encoder.<layers>.{i}.gated_cross_attn_layer.* GatedCrossAttentionBlock, i where (i+1) % n == 0
    lang_encoder.<input embeddings>.weight             vocabulary + <|endofchunk|>, <image>, <PAD>

``<layers>`` is ``model.layers`` (LLaMA), ``transformer.blocks`` (MPT) or ``gpt_neox.layers``
(:data:`LM_LAYOUTS`). Which image text attends to differs between releases (:func:`text_time`):

* open-flamingo 2.x (``legacy=False``): each token attends to the latents of the most recent
  preceding ``<image>``; generated tokens keep attending to the last image.
* open-flamingo 0.0.2 (``legacy=True``): an ``<image>`` token attends to its own image, other text
  to the *next* image, text after the last image and every generated token to no image at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange, repeat
from torch import nn

from radbench.models import decoding

EOC, IMAGE, PAD = "<|endofchunk|>", "<image>", "<PAD>"
# Where each LM family keeps its decoder layers and input embeddings (open_flamingo factory.py).
LM_LAYOUTS: dict[str, tuple[str, str]] = {
    "llama": ("model.layers", "model.embed_tokens"),
    "mpt": ("transformer.blocks", "transformer.wte"),
    "gpt_neox": ("gpt_neox.layers", "gpt_neox.embed_in"),
}


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
        self._lm_step = decoding.hf_step(lang_encoder)
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
        """One :func:`~radbench.models.decoding.greedy_generate` step: media locations, then the LM."""
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
