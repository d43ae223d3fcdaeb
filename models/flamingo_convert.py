"""Loading a Flamingo checkpoint: CLIP, the LM, the tokenizer, and the released files' key layouts.

The checkpoints hold only the perceiver, the gated blocks and the input embeddings; the LM comes
from ``lm_path`` (a transformers folder, never remote code) and CLIP from ``vision_path``
(a transformers folder, or open_clip weights converted by :func:`openclip_to_hf`). CLIP's patch
tokens are ``CLIPVisionModel(...).last_hidden_state[:, 1:]``, i.e. without ``ln_post``, which is
what open_clip <= 2.22 returned when these models were trained.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from radbench.errors import UsageError
from radbench.models import loading
from radbench.models.flamingo_modeling import EOC, IMAGE, LM_LAYOUTS, PAD
from radbench.models.tokenizers import add_special_tokens, assert_token_ids, load_llama_tokenizer

# Keys the training code saved that are not weights of this model (dropped, never loaded).
STALE_KEYS = (
    r".*\.rotary_emb\.inv_freq$",  # transformers 4.28-4.30 saved RoPE buffers
    r"vision_encoder\.",  # 0.0.x kept CLIP buffers; CLIP weights come from vision_path
)



def openclip_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """open_clip / OpenAI ``visual.*`` keys -> transformers ``CLIPVisionModel`` keys."""
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
            raise UsageError(f"model {model!r}: cannot load CLIP from {path}: {loading.first_line(exc)}") from exc
        return clip.to(device).eval()
    state = openclip_to_hf(loading.load_state_dict(path, model))
    if "embeddings.patch_embedding.weight" not in state:
        raise UsageError(f"model {model!r}: vision_path={path} has no open_clip 'visual.*' weights")
    width, _, patch, _ = state["embeddings.patch_embedding.weight"].shape
    grid = int(round((state["embeddings.position_embedding.weight"].shape[0] - 1) ** 0.5))
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layers."))
    cfg = CLIPVisionConfig(hidden_size=width, intermediate_size=state["encoder.layers.0.mlp.fc1.weight"].shape[0],
                           num_hidden_layers=layers, num_attention_heads=width // 64, image_size=grid * patch,
                           patch_size=patch, hidden_act="quick_gelu", layer_norm_eps=1e-5)
    with loading.fast_init(device, dtype):
        clip = CLIPVisionModel(cfg)
    loading.load_checked(clip, state, model=model, source=path)
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
        raise UsageError(f"model {model!r}: cannot read {lm_dir}/config.json: {loading.first_line(exc)} (models that "
                         "need remote code, such as mpt-1b-redpajama's MosaicGPT, are not supported)") from exc
    if config.model_type not in LM_LAYOUTS:
        raise UsageError(f"model {model!r}: lm_path is a {config.model_type!r} model; supported: "
                         f"{', '.join(LM_LAYOUTS)}")
    if config.model_type == "llama":
        config.bos_token_id, config.eos_token_id, config.pad_token_id = 1, 2, 0  # decapoda configs say 0/1/-1
    try:
        lm = AutoModelForCausalLM.from_pretrained(str(lm_dir), config=config, local_files_only=True, dtype=dtype)
    except (OSError, ValueError, pickle.UnpicklingError) as exc:
        if loading.needs_unpickling(exc):  # transformers loads .bin files with weights_only=True
            raise loading.unsafe_pickle(f"model {model!r}: lm_path ", lm_dir, folder=True) from exc
        raise UsageError(f"model {model!r}: cannot load the LM weights in {lm_dir}: {loading.first_line(exc)}") from exc
    return lm.to(device).eval()


def prepare_tokenizer(model: str, tokenizer: Any) -> Any:
    """``create_model_and_transforms``: add ``<|endofchunk|>``, ``<image>``, then ``<PAD>`` if there is no pad.

    open_flamingo loads the LM's tokenizer with ``AutoTokenizer`` (0.0.2 with LLaMA as well as 2.0.1
    with MPT), which gives the fast one; a fast tokenizer's special tokens added as plain strings keep
    the whitespace around them (checked with transformers 4.30.2 and 4.36.2: ``"a <image> b"`` keeps
    both spaces), so nothing is stripped. Ids follow the base vocabulary in that order.
    """
    base, present = len(tokenizer), tokenizer.get_vocab()
    add_special_tokens(tokenizer, [EOC, IMAGE], strip=False)
    # A tokenizer saved after this step already holds the tokens; open_flamingo keeps their ids.
    expected = {t: base + i for i, t in enumerate(t for t in (EOC, IMAGE) if t not in present)}
    if tokenizer.pad_token is None:  # LLaMA-1's and NeoX's tokenizers have none; OpenFlamingo added <PAD>
        from tokenizers import AddedToken

        tokenizer.add_special_tokens({"pad_token": AddedToken(PAD, lstrip=False, rstrip=False, special=True,
                                                              normalized=False)})
        if PAD not in present:
            expected[PAD] = base + len(expected)
    assert_token_ids(model, tokenizer, expected)
    tokenizer.padding_side = "left"
    return tokenizer


def load_tokenizer(model: str, lm_dir: Path, llama: bool) -> Any:
    if llama:
        return load_llama_tokenizer(model, lm_dir)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(lm_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise UsageError(f"model {model!r}: cannot load the tokenizer in {lm_dir}: {loading.first_line(exc)}") from exc


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


def weight_files(folder: Path) -> list[Path]:
    """A transformers folder's weight and tokenizer files: what identifies the weights in it."""
    names = ("*.safetensors", "*.bin", "*.pt", "tokenizer.model", "tokenizer.json")
    return sorted({p for pattern in names for p in folder.glob(pattern) if p.is_file()})
