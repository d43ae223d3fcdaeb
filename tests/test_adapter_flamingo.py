"""OpenFlamingo and Med-Flamingo adapters: media attention, latents, gated layers, released layouts.

Tiny random-initialised models on the CPU. The released-layout tests write each family's files in
the authors' formats (a LLaMA transformers folder with its tokenizer.model, CLIP as a transformers
folder or open_clip weights, ``model.pt``/``checkpoint.pt`` with only perceiver, gated blocks and
input embeddings) and load them back through ``--model-args``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from radbench import cli  # noqa: E402
from radbench.errors import UsageError  # noqa: E402
from radbench.models import decoding  # noqa: E402
from radbench.models import flamingo as fl  # noqa: E402
from radbench.models import flamingo_convert as flc  # noqa: E402
from radbench.models import flamingo_modeling as flm  # noqa: E402
from radbench.models import tiny  # noqa: E402
from radbench.tasks.demo import DemoDataset  # noqa: E402
from radbench.tasks.vqa import VQATask  # noqa: E402
from radbench.types import Request, Turn  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def med() -> fl.MedFlamingoAdapter:
    return fl.MedFlamingoAdapter.from_args(preset="tiny-random")


@pytest.fixture(scope="module")
def openf() -> fl.OpenFlamingoAdapter:
    return fl.OpenFlamingoAdapter.from_args(preset="tiny-random")


@pytest.fixture(scope="module")
def requests_() -> list[Request]:
    """2D, two-image and 3D demo questions; the first carries a one-shot exemplar."""
    samples = DemoDataset().load("vqa", "test", None)
    task = VQATask(gen_kwargs={"max_new_tokens": 5})
    picked = [samples[0], samples[2]] + [s for s in samples if len(s.images) == 2][:1]
    picked += [s for s in samples if s.images and s.images[0].kind == "3d"][:1]
    out = [task.render(s) for s in picked]
    shot = task.render(samples[1]).query
    out[0] = Request(out[0].sample_id, (Turn(shot.segments, answer="left"), out[0].query), out[0].gen_kwargs,
                     task="vqa")
    return out


def test_text_time_matches_both_releases() -> None:
    # BOS, <image>, q, q, <image>, q, q  (1 = <image>)
    loc = torch.tensor([[0, 1, 0, 0, 1, 0, 0]]).bool()
    assert flm.text_time(loc, legacy=False).tolist() == [[0, 1, 1, 1, 2, 2, 2]]  # preceding image
    assert flm.text_time(loc, legacy=True).tolist() == [[1, 1, 2, 2, 2, 0, 0]]  # next image; none after last


def test_64_latents_per_image_and_a_gated_block_every_n_layers(med: fl.MedFlamingoAdapter) -> None:
    with torch.inference_mode():
        media = med.model.encode_images(torch.randn(3, 3, 28, 28))
    assert media.shape == (3, 64, med.model.cfg.vis_dim)
    layers = med.model.lang_encoder.model.layers
    assert [i for i, layer in enumerate(layers) if layer.gated_cross_attn_layer is not None] == [1, 3]
    # released layout: LLaMA-7B's 32 layers with one block every 4 -> 8 blocks at 3, 7, ..., 31
    from transformers import CLIPVisionModel, LlamaForCausalLM

    lm = LlamaForCausalLM(tiny.tiny_llama_config(300, num_hidden_layers=32, hidden_size=16,
                                                 intermediate_size=16, num_attention_heads=2))
    cfg = flm.FlamingoConfig(vis_dim=32, perceiver_depth=1, perceiver_heads=1, perceiver_dim_head=4,
                            xattn_heads=1, xattn_dim_head=4)
    model = flm.Flamingo(CLIPVisionModel(tiny.tiny_clip_vision_config()), lm, cfg, 299, legacy_media_attention=False)
    blocks = [i for i, layer in enumerate(model.lang_encoder.model.layers) if layer.gated_cross_attn_layer is not None]
    assert blocks == [3, 7, 11, 15, 19, 23, 27, 31]


def _logits(adapter: fl.FlamingoAdapter, prompt: str, media: torch.Tensor) -> torch.Tensor:
    ids = torch.tensor([adapter.tokenizer(prompt)["input_ids"]])
    mask = torch.ones_like(ids)
    adapter.model.condition(media)
    try:
        logits, _ = adapter.model.step(ids, None, mask, (mask.cumsum(-1) - 1), None)
    finally:
        adapter.model.condition(None)
    return logits


def test_closed_gates_ignore_the_image_open_gates_see_it() -> None:
    adapter = fl.OpenFlamingoAdapter.from_args(preset="tiny-random")
    prompt = "<image>Question:Is there a pleural effusion? Short answer:"
    with torch.inference_mode():
        a = adapter.model.encode_images(torch.randn(1, 3, 28, 28))[None]
        b = adapter.model.encode_images(torch.randn(1, 3, 28, 28))[None]
        assert torch.equal(_logits(adapter, prompt, a), _logits(adapter, prompt, b))
        for name, param in adapter.model.named_parameters():
            if name.endswith("_gate"):
                param.fill_(1.0)
        assert not torch.allclose(_logits(adapter, prompt, a), _logits(adapter, prompt, b))


def test_cached_generation_equals_full_recompute(requests_: list[Request]) -> None:
    adapter = fl.OpenFlamingoAdapter.from_args(preset="tiny-random")
    with torch.no_grad():
        for name, param in adapter.model.named_parameters():
            if name.endswith("_gate"):
                param.fill_(0.5)
    request = requests_[1]
    prompt, refs = adapter.render(request)
    batch = torch.stack([fl.pixels(r, adapter.spec) for r in refs])
    with torch.inference_mode():
        media = adapter.model.encode_images(batch)[None]
        ids = adapter.tokenizer(prompt)["input_ids"]
        recomputed = []
        for _ in range(6):  # no cache: every step re-reads the whole sequence (v2: text after the image sees it)
            recomputed.append(int(_logits_ids(adapter, ids + recomputed, media).argmax(-1)))
        adapter.model.condition(media)
        mask = torch.ones((1, len(ids)), dtype=torch.long)
        cached = decoding.greedy_generate(adapter.model.step, input_ids=torch.tensor([ids]), attention_mask=mask,
                                       max_new_tokens=[6], eos_token_ids=[-1])[0]
        adapter.model.condition(None)
    assert cached == recomputed


def _logits_ids(adapter: fl.FlamingoAdapter, ids: list[int], media: torch.Tensor) -> torch.Tensor:
    t = torch.tensor([ids])
    mask = torch.ones_like(t)
    adapter.model.condition(media)
    try:
        return adapter.model.step(t, None, mask, mask.cumsum(-1) - 1, None)[0]
    finally:
        adapter.model.condition(None)


@pytest.mark.parametrize("which", ["med", "openf"])
def test_batched_generation_equals_one_at_a_time(which: str, request: pytest.FixtureRequest,
                                                 requests_: list[Request]) -> None:
    adapter = request.getfixturevalue(which)
    single = [adapter.generate([r])[0] for r in requests_]
    assert adapter.generate(requests_) == single


def test_prompts_follow_each_release(med: fl.MedFlamingoAdapter, openf: fl.OpenFlamingoAdapter,
                                     requests_: list[Request]) -> None:
    prompt, refs = med.render(requests_[0])
    assert prompt == (fl.MEDFLAMINGO_SYSTEM + "<image>Question: On which side is the pleural effusion? Answer: left."
                      "<|endofchunk|><image>Question: Is there a pleural effusion? Answer:")
    assert len(refs) == 2
    prompt, _ = openf.render(requests_[0])
    assert prompt == ("<image>Question:On which side is the pleural effusion? Short answer:left<|endofchunk|>\n"
                      "<image>Question:Is there a pleural effusion? Short answer:")
    ids = med.tokenizer(prompt)["input_ids"]
    assert ids.count(med.tokenizer.convert_tokens_to_ids("<image>")) == 2
    assert fl.openflamingo_answer("yes, on the left Question: is", "vqa") == "yes"
    assert fl.openflamingo_answer("effusion, left Short", "report") == "effusion, left"
    assert fl.medflamingo_answer("<unk> pons.\nQuestion: what", "vqa") == "pons."


def test_clip_preprocessing_resizes_shortest_edge_and_center_crops(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from radbench.types import ImageRef

    wide = np.zeros((40, 80, 3), dtype=np.uint8)
    wide[:, 38:42] = 255  # a bright vertical bar in the middle survives the center crop
    Image.fromarray(wide).save(tmp_path / "wide.png")
    spec = fl.preprocess_spec(28)
    image = fl.pixels(ImageRef("wide.png", root=str(tmp_path)), spec)
    assert image.shape == (3, 28, 28)
    assert image[0, :, 14].mean() > image[0, :, 0].mean()
    volume = np.stack([np.full((8, 8), float(i)) for i in range(5)], axis=-1)[None]
    np.save(tmp_path / "vol.npy", volume)
    middle = fl.pixels(ImageRef("vol.npy", kind="3d", root=str(tmp_path)), spec)
    assert middle.shape == (3, 28, 28)
    assert torch.allclose(middle[0], middle[0, 0, 0])  # one slice, uniform: the middle one of 5


# ---------------------------------------------------------------------------------------------
# Released layouts
# ---------------------------------------------------------------------------------------------


def _hf_to_openclip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of :func:`flc.openclip_to_hf`, written independently from the key table."""
    out: dict[str, torch.Tensor] = {}
    table = [("embeddings.patch_embedding.weight", "conv1.weight"), ("embeddings.class_embedding", "class_embedding"),
             ("embeddings.position_embedding.weight", "positional_embedding")]
    for hf_key, oc_key in table:
        out["visual." + oc_key] = state[hf_key]
    for key, value in state.items():
        if key.startswith(("pre_layrnorm.", "post_layernorm.")):
            out["visual." + key.replace("pre_layrnorm", "ln_pre").replace("post_layernorm", "ln_post")] = value
        m = re.match(r"encoder\.layers\.(\d+)\.(.+)", key)
        if not m:
            continue
        i, rest = m.groups()
        base = f"visual.transformer.resblocks.{i}."
        if rest.startswith("self_attn.q_proj."):
            kind = rest.rsplit(".", 1)[1]
            parts = [state[f"encoder.layers.{i}.self_attn.{p}_proj.{kind}"] for p in "qkv"]
            out[base + f"attn.in_proj_{kind}"] = torch.cat(parts)
        for new, old in (("self_attn.out_proj.", "attn.out_proj."), ("layer_norm1.", "ln_1."),
                         ("layer_norm2.", "ln_2."), ("mlp.fc1.", "mlp.c_fc."), ("mlp.fc2.", "mlp.c_proj.")):
            if rest.startswith(new):
                out[base + old + rest[len(new):]] = value
    out["visual.proj"] = torch.zeros(state["post_layernorm.weight"].shape[0], 8)
    return out


def _flamingo_checkpoint(adapter: fl.FlamingoAdapter, layers_attr: str, legacy_aliases: bool) -> dict:
    """The released checkpoint content: perceiver, gated blocks and input embeddings only."""
    state = adapter.model.state_dict()
    out = {k: v.clone() for k, v in state.items()
           if k.startswith("perceiver.") or ".gated_cross_attn_layer." in k}
    embed = "lang_encoder.model.embed_tokens.weight" if layers_attr == "model.layers" else \
        "lang_encoder.transformer.wte.weight"
    out[embed] = state[embed].clone()
    if legacy_aliases:  # open-flamingo 0.0.x saved each gated block twice, plus RoPE buffers
        for key in list(out):
            if m := re.match(rf"lang_encoder\.{re.escape(layers_attr)}\.(\d+)\.gated_cross_attn_layer\.(.+)", key):
                out[f"lang_encoder.gated_cross_attn_layers.{m.group(1)}.{m.group(2)}"] = out[key]
        out["lang_encoder.model.layers.0.decoder_layer.self_attn.rotary_emb.inv_freq"] = torch.ones(4)
    return out


def test_med_flamingo_released_layout_loads(med: fl.MedFlamingoAdapter, requests_: list[Request],
                                            tmp_path: Path) -> None:
    from transformers import CLIPConfig, CLIPModel, LlamaForCausalLM

    model = med.model
    base_vocab = len(med.tokenizer) - 3
    with torch.no_grad():  # released lm_head rows for the added tokens are untrained: radbench zeroes them
        model.lang_encoder.lm_head.weight[base_vocab:] = 0
    # lm_path: LLaMA in transformers format (decapoda-style config ids), plain decoder layers
    lm_state = {}
    for key, value in model.lang_encoder.state_dict().items():
        if ".gated_cross_attn_layer." in key:
            continue
        key = key.replace(".decoder_layer.", ".")
        lm_state[key] = value[:base_vocab] if key in ("model.embed_tokens.weight", "lm_head.weight") else value
    lm_cfg = tiny.tiny_llama_config(base_vocab, bos_token_id=0, eos_token_id=1, pad_token_id=None)
    lm = LlamaForCausalLM(lm_cfg)
    lm.load_state_dict(lm_state)
    lm.save_pretrained(tmp_path / "llama")
    # decapoda's config says pad_token_id=-1, which some transformers 5.x refuse to save: written by hand
    config_file = tmp_path / "llama" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "pad_token_id": -1}))
    tiny.train_sentencepiece(tmp_path / "llama")
    # vision_path: a whole CLIPModel folder, as openai/clip-vit-large-patch14 is
    vcfg = model.vision_encoder.config
    clip = CLIPModel(CLIPConfig(vision_config=vcfg.to_dict(), text_config={
        "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2,
        "vocab_size": 50}, projection_dim=16))
    clip.vision_model.load_state_dict(model.vision_encoder.state_dict())
    clip.save_pretrained(tmp_path / "clip")
    ckpt = tmp_path / "med-flamingo"
    ckpt.mkdir()
    torch.save(_flamingo_checkpoint(med, "model.layers", legacy_aliases=True), ckpt / "model.pt")
    (ckpt / "radbench_config.json").write_text(json.dumps({k: getattr(model.cfg, k) for k in (
        "perceiver_depth", "perceiver_heads", "perceiver_dim_head", "xattn_heads", "xattn_dim_head")}))

    loaded = fl.MedFlamingoAdapter.from_args(checkpoint=str(ckpt), lm_path=str(tmp_path / "llama"),
                                             vision_path=str(tmp_path / "clip"))
    assert loaded.source["cross_attn_every_n_layers"] == 2
    assert "rotary_emb" in loaded.source["keys"]["dropped_stale"]
    assert loaded.tokenizer.convert_tokens_to_ids(["<|endofchunk|>", "<image>", "<PAD>"]) == \
        [base_vocab, base_vocab + 1, base_vocab + 2]
    assert loaded.generate(requests_) == med.generate(requests_)

    # a checkpoint that misses a gated block is refused, naming the keys
    state = torch.load(ckpt / "model.pt", weights_only=True)
    for key in [k for k in state if ".3.gated_cross_attn_layer.ff." in k or "gated_cross_attn_layers.3.ff." in k]:
        del state[key]
    torch.save(state, ckpt / "model.pt")
    with pytest.raises(UsageError, match=r"missing keys: lang_encoder\.model\.layers\.3\.gated_cross_attn_layer\.ff"):
        fl.MedFlamingoAdapter.from_args(checkpoint=str(ckpt), lm_path=str(tmp_path / "llama"),
                                        vision_path=str(tmp_path / "clip"))


def test_openflamingo_v2_mpt_layout_with_open_clip_weights(requests_: list[Request], tmp_path: Path) -> None:
    from transformers import CLIPVisionModel, MptConfig, MptForCausalLM

    tok = tiny.tiny_bpe_tokenizer()
    tok.save_pretrained(tmp_path / "mpt")
    mpt_cfg = MptConfig(d_model=32, n_heads=4, n_layers=2, expansion_ratio=2, max_seq_len=512,
                        vocab_size=len(tok))
    with tiny.seeded(1):
        MptForCausalLM(mpt_cfg).save_pretrained(tmp_path / "mpt")
        # open_clip ViTs have 64-wide heads: the open_clip loader derives the head count from that
        clip = CLIPVisionModel(tiny.tiny_clip_vision_config(hidden_size=64, num_attention_heads=1))
    torch.save(_hf_to_openclip(clip.state_dict()), tmp_path / "open_clip_vit.bin")

    # the checkpoint as OpenFlamingo v2 trains it: a block before every layer (like mpt-1b), wte grown by 3
    lm = MptForCausalLM.from_pretrained(tmp_path / "mpt")
    flc.grow_vocab(lm, len(tok) + 3)
    cfg = fl.replace(flm.FlamingoConfig.tiny(64), cross_attn_every_n_layers=1)
    with tiny.seeded(2):
        source = flm.Flamingo(clip, lm, cfg, len(tok) + 1, legacy_media_attention=False)
        for name, param in source.named_parameters():
            if name.endswith("_gate"):
                param.data.fill_(0.7)
    ckpt = tmp_path / "of"
    ckpt.mkdir()
    state = {k: v for k, v in source.state_dict().items()
             if k.startswith("perceiver.") or ".gated_cross_attn_layer." in k or k == "lang_encoder.transformer.wte.weight"}
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, ckpt / "checkpoint.pt")
    (ckpt / "radbench_config.json").write_text(json.dumps({k: getattr(cfg, k) for k in (
        "perceiver_depth", "perceiver_heads", "perceiver_dim_head", "xattn_heads", "xattn_dim_head")}))

    adapter = fl.OpenFlamingoAdapter.from_args(checkpoint=str(ckpt), lm_path=str(tmp_path / "mpt"),
                                               vision_path=str(tmp_path / "open_clip_vit.bin"))
    assert adapter.source["lm_type"] == "mpt" and adapter.source["cross_attn_every_n_layers"] == 1
    assert torch.equal(adapter.model.vision_encoder.state_dict()["encoder.layers.1.self_attn.v_proj.weight"],
                       clip.state_dict()["encoder.layers.1.self_attn.v_proj.weight"])
    assert torch.equal(adapter.model.perceiver.latents, source.perceiver.latents)
    single = [adapter.generate([r])[0] for r in requests_[1:]]
    assert adapter.generate(requests_[1:]) == single

    # split across devices MptBlock by MptBlock (ALiBi bias and media follow each block): the same tokens,
    # and with every other block on a fake second device, no op mixes devices (tests/test_model_parallel.py)
    from tests.support.devices import META, PromptStep, alternating, fake_meta_layers, first_step_only

    def load() -> fl.OpenFlamingoAdapter:
        return fl.OpenFlamingoAdapter.from_args(checkpoint=str(ckpt), lm_path=str(tmp_path / "mpt"),
                                                vision_path=str(tmp_path / "open_clip_vit.bin"))

    adapter.spread(alternating(adapter, torch.device("cpu")), check_memory=False)
    assert adapter.generate(requests_[1:]) == single
    faked = load()
    faked.spread(alternating(faked, META), check_memory=False)
    assert fake_meta_layers(faked) == [0]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(decoding, "greedy_generate", first_step_only)
        with pytest.raises(PromptStep) as step:
            faked.generate(requests_[1:])
    assert step.value.logits.device == torch.device("cpu")


def test_missing_paths_give_one_line_naming_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    local = {"lm_path": str(tmp_path), "vision_path": str(tmp_path)}
    with pytest.raises(UsageError, match="model.pt"):
        fl.MedFlamingoAdapter.from_args(checkpoint=str(tmp_path), **local)
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    # lm_path left out: the released LM repo, not cached and offline, is one line naming it and the cache.
    with pytest.raises(UsageError, match="RedPajama-INCITE-Base-3B-v1 is not in the cache .*empty-hub-cache"):
        fl.OpenFlamingoAdapter.from_args(checkpoint=str(tmp_path))
    with pytest.raises(UsageError, match="config.json"):
        fl.OpenFlamingoAdapter.from_args(checkpoint=str(tmp_path), lm_path=str(tmp_path), vision_path=str(tmp_path))
    with pytest.raises(UsageError, match="legacy_media_attention"):
        fl.MedFlamingoAdapter.from_args(preset="tiny-random", legacy_media_attention="maybe")


@pytest.mark.parametrize("model", ["openflamingo", "medflamingo"])
def test_cli_run_writes_results(model: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = cli.main(["run", "--model", model, "--model-args", "preset=tiny-random", "--task", "vqa",
                     "--dataset", "demo", "--limit", "4", "--output", str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_samples"] == 4
    assert results["model"]["source"]["legacy_media_attention"] is (model == "medflamingo")
