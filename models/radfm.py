"""RadFM (chaoyi-wu/RadFM, commit 9efba84): 3D ViT + perceiver + LLaMA-13B, registered as ``radfm``.

The architecture is rebuilt here with the authors' module names, so the released
``pytorch_model.bin`` loads with a plain ``load_state_dict``:

    lang_model                       transformers LlamaForCausalLM (LLaMA-13B, untied lm_head)
    embedding_layer.weight           the same Parameter as lang_model.model.embed_tokens.weight
    embedding_layer.figure_token_weight    rows for <image> (32000) and </image> (32001)
    embedding_layer.vision_encoder   3D ViT, patch 32x32x4, dim 768, 12 layers, no final norm
    embedding_layer.perceiver        perceiver resampler, 32 latents, depth 6
    embedding_layer.fc               Linear 768 -> 5120

Every image or scan becomes 32 LM tokens; in text it is the 34-token block
``<image><image{32i}>...<image{32i+31}></image>``, and id ``32002+k`` looks up visual row ``k``.
The Med-KEBERT model, its projection, the keyword decoder and segmentation heads in the checkpoint
are unused at inference and not built; their keys, and the ``rotary_emb.inv_freq`` buffers
transformers 4.28 saved, are the only keys dropped on load.

Inference as the authors ran it (Quick_demo/test.py, src/test.py), with three documented changes:
the 2D crop is a deterministic ``Resize((512, 512), BICUBIC)`` instead of ``RandomResizedCrop``
(radbench's ``radfm`` preprocessing preset, :mod:`radbench.images`);
EOS is id 2 (the shipped config's ``eos=1`` is the decapoda bug; RadFM trained with 2); requests
are batched with left padding (verified to give the bs=1 tokens).

``protocol=authors`` stops where the authors' ``generate`` stopped: ``lang_model.generate`` takes
its EOS from ``Quick_demo/Language_files/config.json`` (``eos_token_id: 1``; the folder has no
``generation_config.json``), so only id 1 ends an answer; greedy, 200 new tokens (``top_k=50``
without sampling changes nothing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from einops import rearrange, repeat
from einops.layers.torch import Rearrange
from torch import nn

from radbench import safe_io
from radbench import images
from radbench.errors import SampleError, UsageError
from radbench.models import decoding, loading, placement, tiny
from radbench.models.args import AUTHORS, CheckpointArgs, find_in, require_file
from radbench.models.hub_args import hub_path
from radbench.models.checkpoint import Build, CheckpointAdapter
from radbench.models.flamingo_modeling import PerceiverResampler  # helpers.py is Flamingo's resampler, verbatim
from radbench.models.tokenizers import add_special_tokens, assert_token_ids, load_llama_tokenizer
from radbench.types import ImageRef, Request

IMAGE_TOKENS = 32  # perceiver latents per image = <image{k}> tokens per image block
MAX_IMAGES = 100  # the tokenizer of Quick_demo/test.py and training; the first 322 ids equal the test one's
CONTEXT = 2048  # the authors tokenized with max_length=2048
DEFAULT_MAX_NEW_TOKENS = 200
EOS_ID = 2  # what RadFM trained with (radbench's stop)
AUTHORS_EOS_ID = 1  # the shipped Language_files/config.json's eos_token_id, which the authors' generate used
# Checkpoint keys that are not part of the inference model (the module docstring lists them).
STALE_KEYS = (
    r"lang_model\.model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$",
    r"embedding_layer\.bert_model\.",
    r"embedding_layer\.bert_projection_fc\.",
    r"embedding_layer\.transformer_decoder\.",
    r"embedding_layer\.transformer_decoder_mlp\.",
    r"embedding_layer\.output_upscaling\.",
    r"embedding_layer\.cls_head\.",
)


@dataclass(frozen=True)
class RadFMConfig:
    """Sizes of every part; :meth:`released` is the checkpoint's, :meth:`tiny` the test preset's."""

    vocab_size: int = 32000
    hidden_size: int = 5120
    intermediate_size: int = 13824
    num_hidden_layers: int = 40
    num_attention_heads: int = 40
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 2048
    image_size: int = 512
    patch_size: int = 32
    frames: int = 512
    frame_patch_size: int = 4
    vis_dim: int = 768
    vit_depth: int = 12
    vit_heads: int = 8
    vit_dim_head: int = 64
    vit_mlp_dim: int = 2048
    perceiver_depth: int = 6
    perceiver_heads: int = 8
    perceiver_dim_head: int = 64
    num_latents: int = IMAGE_TOKENS

    @classmethod
    def released(cls) -> "RadFMConfig":
        return cls()

    @classmethod
    def tiny(cls, vocab_size: int) -> "RadFMConfig":
        # vis_dim divisible by 3 (3D position table); frames=64 keeps the real depth rule (D <= 64)
        return cls(
            vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=CONTEXT, image_size=32, patch_size=16, frames=64,
            frame_patch_size=4, vis_dim=24, vit_depth=1, vit_heads=2, vit_dim_head=8, vit_mlp_dim=32,
            perceiver_depth=1, perceiver_heads=2, perceiver_dim_head=8,
        )

    def llama_config(self) -> Any:
        from transformers import LlamaConfig

        # bos/eos/pad forced to what RadFM trained with (the shipped config says 0/1/-1).
        return LlamaConfig(
            vocab_size=self.vocab_size, hidden_size=self.hidden_size, intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers, num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_attention_heads, rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings, hidden_act="silu", tie_word_embeddings=False,
            bos_token_id=1, eos_token_id=2, pad_token_id=0,
        )


# ---------------------------------------------------------------------------------------------
# 3D ViT (vit_3d.py, position_encoding.py)
# ---------------------------------------------------------------------------------------------


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class ViTFeedForward(nn.Module):
    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        # Dropouts kept (p=0, inactive) so the Linear layers sit at the checkpoint's indices 0 and 3.
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden_dim, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        attn = (torch.matmul(q, k.transpose(-1, -2)) * self.scale).softmax(dim=-1)
        return self.to_out(rearrange(torch.matmul(attn, v), "b h n d -> b n (h d)"))


class ViTTransformer(nn.Module):
    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PreNorm(dim, ViTAttention(dim, heads, dim_head)), PreNorm(dim, ViTFeedForward(dim, mlp_dim))])
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:  # type: ignore[misc]
            x = attn(x) + x
            x = ff(x) + x
        return x


class PositionEmbeddingLearned3d(nn.Module):
    """Three learned tables (rows, columns, depth), resampled when the patch grid is smaller."""

    def __init__(self, num_pos_feats: int, h_patch_num: int, w_patch_num: int, d_patch_num: int) -> None:
        super().__init__()
        self.h_patch_num, self.w_patch_num, self.d_patch_num = h_patch_num, w_patch_num, d_patch_num
        self.row_embed = nn.Embedding(h_patch_num, num_pos_feats)
        self.col_embed = nn.Embedding(w_patch_num, num_pos_feats)
        self.dep_embed = nn.Embedding(d_patch_num, num_pos_feats)

    def forward(self, batch: int, h: int, w: int, d: int, device: torch.device) -> torch.Tensor:
        i = (torch.arange(h, device=device) + 1) * (self.h_patch_num // h) - 1
        j = (torch.arange(w, device=device) + 1) * (self.w_patch_num // w) - 1
        k = (torch.arange(d, device=device) + 1) * (self.d_patch_num // d) - 1
        x_emb = self.row_embed(i)[:, None, None, :].expand(h, w, d, -1)
        y_emb = self.col_embed(j)[None, :, None, :].expand(h, w, d, -1)
        z_emb = self.dep_embed(k)[None, None, :, :].expand(h, w, d, -1)
        pos = torch.cat([x_emb, y_emb, z_emb], dim=-1)
        return repeat(pos, "h w d c -> b (h w d) c", b=batch)


class ViT3D(nn.Module):
    """``(N, 3, H, W, D)`` -> ``(N, (H/p)(W/p)(D/pf), dim)`` patch tokens (no CLS, no final norm)."""

    def __init__(self, cfg: RadFMConfig) -> None:
        super().__init__()
        p, pf, dim = cfg.patch_size, cfg.frame_patch_size, cfg.vis_dim
        patch_dim = 3 * p * p * pf
        self.patch_size, self.frame_patch_size = p, pf
        self.to_patch_embedding = nn.Sequential(
            Rearrange("b c (h p1) (w p2) (f pf) -> b (h w f) (p1 p2 pf c)", p1=p, p2=p, pf=pf),
            nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim),
        )
        grid = cfg.image_size // p
        self.pos_embedding = PositionEmbeddingLearned3d(dim // 3, grid, grid, cfg.frames // pf)
        self.transformer = ViTTransformer(dim, cfg.vit_depth, cfg.vit_heads, cfg.vit_dim_head, cfg.vit_mlp_dim)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        b, _, h, w, d = video.shape
        x = self.to_patch_embedding(video)
        x = x + self.pos_embedding(b, h // self.patch_size, w // self.patch_size, d // self.frame_patch_size, x.device)
        return self.transformer(x)


# ---------------------------------------------------------------------------------------------
# The multimodal embedding and the whole model
# ---------------------------------------------------------------------------------------------


class MyEmbedding(nn.Module):
    """RadFM's embedding: the LM vocabulary, two figure rows, then each sample's visual rows."""

    def __init__(self, cfg: RadFMConfig) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size))  # replaced by the LM's table
        self.figure_token_weight = nn.Parameter(torch.randn(2, cfg.hidden_size))
        self.vision_encoder = ViT3D(cfg)
        self.perceiver = PerceiverResampler(cfg.vis_dim, cfg.perceiver_depth, cfg.perceiver_dim_head,
                                            cfg.perceiver_heads, cfg.num_latents)
        self.fc = nn.Linear(cfg.vis_dim, cfg.hidden_size)

    def encode_images(self, vision_x: torch.Tensor) -> torch.Tensor:
        """``(S, 3, H, W, D)`` (one sample's images) -> ``(S * 32, hidden)`` visual rows, image-major."""
        feats = self.vision_encoder(vision_x)  # (S, v, d)
        latents = self.perceiver(feats[None, :, None])  # (1, S, n, d)
        return self.fc(rearrange(latents[0], "s n d -> (s n) d"))

    def embed(self, ids: torch.Tensor, visual: torch.Tensor | None) -> torch.Tensor:
        """Token ids (L,) -> embeddings (L, hidden): the gather that equals the authors' one-hot matmul."""
        vocab = self.weight.shape[0]
        out = self.weight[ids.clamp(max=vocab - 1)]
        figure = (ids >= vocab) & (ids < vocab + 2)
        if figure.any():
            out[figure] = self.figure_token_weight[ids[figure] - vocab].to(out.dtype)
        vis = ids >= vocab + 2
        if vis.any():
            if visual is None or int(ids[vis].max()) - vocab - 2 >= visual.shape[0]:
                raise SampleError("prompt references more <image{k}> rows than the sample has images")
            out[vis] = visual[ids[vis] - vocab - 2].to(out.dtype)
        return out


class RadFMModel(nn.Module):
    """``MultiLLaMAForCausalLM``: the LM and the multimodal embedding sharing one token table."""

    def __init__(self, cfg: RadFMConfig) -> None:
        super().__init__()
        from transformers import LlamaForCausalLM

        self.lang_model = LlamaForCausalLM(cfg.llama_config())
        self.embedding_layer = MyEmbedding(cfg)
        self.tie_weights()

    def tie_weights(self) -> None:
        """``embedding_layer.weight`` is the LM's token table (one tensor, both keys in the checkpoint)."""
        self.embedding_layer.weight = self.lang_model.get_input_embeddings().weight


# ---------------------------------------------------------------------------------------------
# Preprocessing and prompts
# ---------------------------------------------------------------------------------------------


def image_block(index: int) -> str:
    """The 34-token text for image ``index`` (0-based, order of appearance in the prompt)."""
    tokens = "".join(f"<image{IMAGE_TOKENS * index + j}>" for j in range(IMAGE_TOKENS))
    return f"<image>{tokens}</image>"


def special_tokens() -> list[str]:
    return ["<image>", "</image>"] + [f"<image{k}>" for k in range(IMAGE_TOKENS * MAX_IMAGES)]


def render_prompt(request: Request) -> tuple[str, list[ImageRef]]:
    """RadFM's prompt: each image's block where its segment sits, exemplars as ``question answer`` lines.

    RadFM publishes no few-shot protocol; radbench writes each exemplar as
    the training sequence ``question + ' ' + answer`` and separates turns with a newline.
    """
    refs: list[ImageRef] = []
    lines = []
    for turn in request.turns:
        parts = []
        for seg in turn.segments:
            if seg.image is not None:
                parts.append(image_block(len(refs)))
                refs.append(seg.image)
            else:
                parts.append(seg.text or "")
        text = "".join(parts)
        lines.append(text if turn.answer is None else f"{text} {turn.answer}")
    return "\n".join(lines), refs


# radbench's ``radfm`` preset; the adapter hands it (at the checkpoint's size) to the runner as ``spec``.
# Quick_demo/test.py converts to RGB first (a 16-bit PNG clips at 255), then RandomResizedCrop(512,
# scale 0.8-1, bicubic) -> ToTensor. The crop is random at test time; radbench resizes the whole image
# (a deterministic choice, kept under every protocol).
PRESET = images.Preprocess("radfm", 512, "squash", "bicubic", volume="radfm")


def preprocess_spec(size: int) -> images.Preprocess:
    """radbench's ``radfm`` preset at ``size``: 2D squashed to ``size``x``size`` (bicubic, the authors'
    RandomResizedCrop made deterministic), ``ToTensor`` scale, no mean/std; 3D kept whole, min-max
    over the case file."""
    return replace(PRESET, size=size)


def vision_input(refs: Sequence[ImageRef], spec: images.Preprocess) -> torch.Tensor:
    """``stack_images``: a sample's images as ``(S, 3, size, size, target_D)``, depth in {4, ..., 64}."""
    arrays = [images.prepare(ref, spec).array for ref in refs]
    return torch.from_numpy(images.radfm_stack(arrays, spec.size))


# ---------------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------------

LAYERS = "lang_model.model.layers"  # the decoder layers a split model is cut between (device_map=auto)


@dataclass(frozen=True)
class RadFMArgs(CheckpointArgs):
    """``checkpoint=`` the unzipped ``pytorch_model.bin`` (or its folder); ``lm_path=`` ``Language_files``.

    By default the released repo ``chaoyi-wu/RadFM``: its split zip (``RadFM.z01``-``.z04`` +
    ``RadFM.zip``) is assembled and unpacked once into the cache; ``Language_files`` beside the weights.
    """

    checkpoint: str | None = hub_path(
        "chaoyi-wu/RadFM", patterns=("RadFM.z[0-9][0-9]", "RadFM.zip", "pytorch_model.bin", "*.safetensors",
                                     "Language_files/*"),
        locate=("pytorch_model.bin", "pytorch_model.safetensors", "model.safetensors"))
    lm_path: str | None = hub_path(patterns=("*.json", "tokenizer.model"), locate=("tokenizer.model",))


class RadFMAdapter(CheckpointAdapter):
    """RadFM behind ``generate()``; see the module docstring for what is and is not the authors' setup."""

    name = "radfm"
    version = "1"
    Args = RadFMArgs

    def __init__(self, model: RadFMModel, tokenizer: Any, cfg: RadFMConfig, build: Build, fingerprint: str,
                 source: dict[str, Any]) -> None:
        super().__init__(model, tokenizer, build, fingerprint, source, preprocess_spec(cfg.image_size))
        self.cfg = cfg
        self._step = decoding.hf_step(model.lang_model)

    def split_points(self) -> tuple[torch.nn.Module, str, torch.nn.Module]:
        return self.model, LAYERS, self.model.lang_model

    @classmethod
    def build_tiny(cls, args: RadFMArgs, build: Build) -> "RadFMAdapter":
        """The same architecture at toy sizes, seeded: for tests and smoke runs without weights."""
        tokenizer = tiny.tiny_llama_tokenizer(cls.name)
        cfg = RadFMConfig.tiny(len(tokenizer))
        tokenizer = prepare_tokenizer(tokenizer, cfg)
        with tiny.seeded(build.seed):
            model = RadFMModel(cfg)
        model.to(device=build.device, dtype=build.dtype)
        fingerprint = cls.tiny_identity(asdict(cfg), build, preprocess_spec(cfg.image_size))
        return cls(model, tokenizer, cfg, build, fingerprint, {"preset": "tiny-random"})

    @classmethod
    def from_checkpoint(cls, model_args: Mapping[str, str], device: torch.device, dtype: torch.dtype,
                        max_batch_size: int, devices: Sequence[torch.device] | None = None,
                        check_memory: bool = True) -> "RadFMAdapter":
        """Released weights onto explicit devices (the split-loading path without GPUs, in tests)."""
        build = Build(dtype=dtype, device=device, devices=list(devices) if devices else None,
                      batch_size=max_batch_size, check_memory=check_memory)
        return cls.load_released(RadFMArgs.parse(cls.name, model_args), build)

    @classmethod
    def load_released(cls, args: RadFMArgs, build: Build) -> "RadFMAdapter":
        """Released weights: ``checkpoint=`` the unzipped ``pytorch_model.bin`` (or its folder).

        With split GPUs (``device_map=auto``) the model is built without weights, split over them
        (:func:`placement.plan_spread`), and every checkpoint tensor goes straight to its GPU: the
        13B model never sits whole in host memory.
        """
        expected = "RadFM's pytorch_model.bin, unzipped from RadFM.zip/.z01-.z04 on the chaoyi-wu/RadFM model page"
        ckpt = require_file(cls.name, "checkpoint", args.checkpoint, expected)
        weights = find_in(cls.name, "checkpoint", ckpt, ("pytorch_model.bin", "pytorch_model.safetensors",
                                                          "model.safetensors"), expected)
        lm_dir = Path(args.lm_path or weights.parent / "Language_files").expanduser()
        if not (lm_dir / "tokenizer.model").is_file():
            raise UsageError(
                f"model 'radfm': {lm_dir} lacks tokenizer.model (pass --model-args lm_path=DIR with the repository's "
                "Quick_demo/Language_files folder)"
            )
        cfg = config_from_folder(lm_dir)
        cfg = replace(cfg, **loading.config_overrides(cls.name, weights.parent, [f.name for f in fields(RadFMConfig)]))
        tokenizer = prepare_tokenizer(load_llama_tokenizer(cls.name, lm_dir), cfg)
        plan = None
        if build.devices:
            with loading.empty_init(build.dtype):
                model = RadFMModel(cfg)
            model.tie_weights()  # the empty build registered the shared token table twice
            plan = placement.plan_spread(model, LAYERS, build.devices, name=cls.name,
                                         free_bytes=placement.free_gpu_bytes if build.check_memory else None)
        else:
            with loading.fast_init(build.device, build.dtype):
                model = RadFMModel(cfg)
        report = loading.load_checked(model, loading.load_state_dict(weights, cls.name), model=cls.name,
                                      source=weights, stale=STALE_KEYS, plan=plan)
        fingerprint = cls.weights_identity([weights, lm_dir / "tokenizer.model"], args, build,
                                           preprocess_spec(cfg.image_size))
        source = {"checkpoint": str(weights), "lm_path": str(lm_dir), "keys": report.to_json()}
        if plan is None:
            return cls(model, tokenizer, cfg, build, fingerprint, source)
        return cls(model, tokenizer, cfg, replace(build, device=plan.devices[0]), fingerprint, source).dispatch(plan)

    def stop_ids(self) -> list[int]:
        return [AUTHORS_EOS_ID] if self.protocol == AUTHORS else [EOS_ID]

    def decoding_facts(self) -> dict[str, Any]:
        facts = {"greedy": True, "eos_token_id": self.stop_ids()[0], "default_max_new_tokens": DEFAULT_MAX_NEW_TOKENS}
        if self.protocol == AUTHORS:
            facts["authors_settings_override_gen_kwargs"] = {"num_beams": 1, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS}
        return {"decoding": facts}

    def encode(self, request: Request) -> tuple[list[int], torch.Tensor | None]:
        """A request's token ids and its images' visual rows (``None`` without images)."""
        prompt, refs = render_prompt(request)
        if len(refs) > MAX_IMAGES:
            raise SampleError(f"RadFM's tokenizer has blocks for {MAX_IMAGES} images; this prompt has {len(refs)}")
        ids = self.tokenizer(prompt)["input_ids"]
        if len(ids) > CONTEXT:
            raise SampleError(f"prompt is {len(ids)} tokens, longer than RadFM's {CONTEXT}-token context")
        if not refs:
            return ids, None
        vision_x = vision_input(refs, self.spec)
        with torch.inference_mode():
            visual = self.model.embedding_layer.encode_images(vision_x.to(self.device, self.dtype))
        return ids, visual

    @torch.inference_mode()
    def generate(self, requests: Sequence[Request]) -> list[str]:
        # protocol=authors: greedy, 200 new tokens, whatever the task asks (MultiLLaMAForCausalLM.generate)
        overrides = {"num_beams": 1, "max_new_tokens": DEFAULT_MAX_NEW_TOKENS} if self.protocol == AUTHORS else {}
        decodings = [decoding.decoding_of(self.name, r.gen_kwargs, DEFAULT_MAX_NEW_TOKENS, overrides) for r in requests]
        decoding.batch_beams(self.name, decodings)
        embeds = []
        for request in requests:
            ids, visual = self.encode(request)
            ids_t = torch.tensor(ids, device=self.device)
            embeds.append(self.model.embedding_layer.embed(ids_t, visual))
        inputs_embeds, mask = decoding.left_pad_embeds(embeds)
        new_tokens = decoding.generate(self._step, inputs_embeds=inputs_embeds, attention_mask=mask,
                                       decodings=decodings, eos_token_ids=self.stop_ids(), pad_token_id=0)
        return [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in new_tokens]


def prepare_tokenizer(tokenizer: Any, cfg: RadFMConfig) -> Any:
    """``get_tokenizer``: add ``<image>``, ``</image>``, ``<image0..3199>``; pad 0, bos 1, eos 2; assert ids."""
    add_special_tokens(tokenizer, special_tokens(), strip=True)
    tokenizer.pad_token = tokenizer.convert_ids_to_tokens(0)
    assert_token_ids("radfm", tokenizer, {
        "<image>": cfg.vocab_size, "</image>": cfg.vocab_size + 1, "<image0>": cfg.vocab_size + 2,
    })
    return tokenizer


def config_from_folder(lm_dir: Path) -> RadFMConfig:
    """The released sizes, checked against ``Language_files/config.json`` when it is there."""
    cfg = RadFMConfig.released()
    path = lm_dir / "config.json"
    if not path.is_file():
        return cfg
    data = safe_io.read_json_object(path, "model 'radfm'")
    names = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
             "rms_norm_eps")
    return replace(cfg, **{f: type(getattr(cfg, f))(data[f]) for f in names if f in data})
