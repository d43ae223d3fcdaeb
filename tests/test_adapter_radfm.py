"""RadFM adapter: token counts, the embedding gather, the released key layout, batching, the CLI.

Everything runs on a tiny random-initialised RadFM (``preset=tiny-random``) on the CPU; no test
checks answer quality (tiny models generate noise), only what the spec pins.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from radbench import cli  # noqa: E402
from radbench.errors import UsageError  # noqa: E402
from radbench.models import radfm, tiny  # noqa: E402
from radbench.tasks.demo import DemoDataset  # noqa: E402
from radbench.tasks.vqa import VQATask  # noqa: E402
from radbench.types import Request, Segment, Turn  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def adapter() -> radfm.RadFMAdapter:
    return radfm.RadFMAdapter.from_args(preset="tiny-random")


@pytest.fixture(scope="module")
def requests_() -> list[Request]:
    """Demo VQA requests mixing 2D, 3D and two-image samples, each with a short generation budget."""
    samples = DemoDataset().load("vqa", "test", None)
    task = VQATask(gen_kwargs={"max_new_tokens": 6})
    picked = [samples[0], samples[1]]
    picked += [s for s in samples if len(s.images) == 2][:1]
    picked += [s for s in samples if s.images and s.images[0].kind == "3d"][:2]
    return [task.render(s) for s in picked]


def test_image_block_is_34_tokens_with_the_released_ids(adapter: radfm.RadFMAdapter) -> None:
    tok, vocab = adapter.tokenizer, adapter.cfg.vocab_size
    assert tok.convert_tokens_to_ids(["<image>", "</image>", "<image0>"]) == [vocab, vocab + 1, vocab + 2]
    ids = tok(radfm.image_block(1), add_special_tokens=False)["input_ids"]
    assert len(ids) == 34
    assert ids == [vocab] + list(range(vocab + 2 + 32, vocab + 2 + 64)) + [vocab + 1]
    # legacy tokenization: text after a special token keeps SentencePiece's word-start marker
    after = tok.convert_ids_to_tokens(tok("</image>Question", add_special_tokens=False)["input_ids"])
    assert after[1].startswith("▁")


def test_token_id_assertion_catches_a_shifted_vocabulary() -> None:
    tok = tiny.tiny_llama_tokenizer("radfm")
    with pytest.raises(UsageError, match="<image>"):
        radfm.prepare_tokenizer(tok, radfm.RadFMConfig.tiny(len(tok) + 1))


def test_every_image_becomes_32_tokens_2d_and_3d(adapter: radfm.RadFMAdapter) -> None:
    emb = adapter.model.embedding_layer
    size = adapter.cfg.image_size
    with torch.inference_mode():
        flat = emb.encode_images(torch.rand(2, 3, size, size, 4))
        deep = emb.encode_images(torch.rand(1, 3, size, size, 64))
    assert flat.shape == (64, adapter.cfg.hidden_size)
    assert deep.shape == (32, adapter.cfg.hidden_size)


def test_gather_equals_the_authors_one_hot_matmul(adapter: radfm.RadFMAdapter) -> None:
    emb = adapter.model.embedding_layer
    vocab = adapter.cfg.vocab_size
    visual = torch.randn(64, adapter.cfg.hidden_size)
    ids = torch.tensor([1, 5, vocab, vocab + 2, vocab + 40, vocab + 65, vocab + 1, 7])
    with torch.inference_mode():
        table = torch.cat([emb.weight, emb.figure_token_weight, visual])
        expected = torch.nn.functional.one_hot(ids, table.shape[0]).to(table.dtype) @ table
        assert torch.allclose(emb.embed(ids, visual), expected, atol=1e-6)


def test_vision_input_stacks_a_sample_at_one_depth(adapter: radfm.RadFMAdapter, requests_: list[Request]) -> None:
    three_d = next(r for r in requests_ if r.images[0].kind == "3d")
    stacked = radfm.vision_input(three_d.images + requests_[0].images, adapter.spec)
    size = adapter.cfg.image_size
    assert stacked.shape == (2, 3, size, size, 16)  # the demo volumes have 16 slices: 2D images join at D=16
    assert 0.0 <= float(stacked.min()) and float(stacked.max()) <= 1.0


def test_prompt_numbers_images_in_order_and_writes_exemplars_as_training_sequences(
    requests_: list[Request],
) -> None:
    two = next(r for r in requests_ if len(r.images) == 2)
    shot = Turn((Segment(image=two.images[0]), Segment(text="Is there a nodule?")), answer="no")
    request = Request("x", (shot, two.query))
    prompt, refs = radfm.render_prompt(request)
    assert refs == [two.images[0], *two.images]
    assert prompt.startswith(radfm.image_block(0) + "Is there a nodule? no\n" + radfm.image_block(1) + radfm.image_block(2))


def test_batched_generation_equals_one_at_a_time(adapter: radfm.RadFMAdapter, requests_: list[Request]) -> None:
    single = [adapter.generate([r])[0] for r in requests_]
    assert adapter.generate(requests_) == single


def test_max_new_tokens_and_greedy_only(adapter: radfm.RadFMAdapter, requests_: list[Request]) -> None:
    ids, visual = adapter.encode(requests_[0])
    assert len(ids) == 1 + 34 + len(adapter.tokenizer(requests_[0].query.segments[-1].text,
                                                     add_special_tokens=False)["input_ids"])
    with pytest.raises(UsageError, match="do_sample"):
        adapter.generate([Request("x", requests_[0].turns, gen_kwargs={"do_sample": True})])


def _write_released_layout(adapter: radfm.RadFMAdapter, root: Path) -> Path:
    """A tiny RadFM in the released files: pytorch_model.bin (with the stale keys) + Language_files/."""
    state = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    state["lang_model.model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    state["embedding_layer.bert_model.embeddings.position_ids"] = torch.arange(4)[None]
    state["embedding_layer.bert_model.encoder.layer.0.output.dense.weight"] = torch.zeros(2, 2)
    state["embedding_layer.transformer_decoder.layers.0.linear1.weight"] = torch.zeros(2, 2)
    state["embedding_layer.output_upscaling.1.running_mean"] = torch.zeros(2)
    state["embedding_layer.cls_head.weight"] = torch.zeros(1, 12)
    torch.save(state, root / "pytorch_model.bin")
    lang = root / "Language_files"
    tiny.train_sentencepiece(lang)
    cfg = adapter.cfg
    (lang / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": -1,
        "hidden_size": cfg.hidden_size, "intermediate_size": cfg.intermediate_size, "model_type": "llama",
        "num_attention_heads": cfg.num_attention_heads, "num_hidden_layers": cfg.num_hidden_layers,
        "rms_norm_eps": 1e-6, "vocab_size": cfg.vocab_size, "tie_word_embeddings": False,
    }))
    # RadFM's shipped tokenizer_config.json has empty special tokens (a RecursionError in transformers 5.x)
    (lang / "tokenizer_config.json").write_text(json.dumps(
        {"bos_token": "", "eos_token": "", "unk_token": "", "tokenizer_class": "LlamaTokenizer"}))
    (lang / "special_tokens_map.json").write_text("{}")
    vision = {k: getattr(cfg, k) for k in ("image_size", "patch_size", "frames", "frame_patch_size", "vis_dim",
                                           "vit_depth", "vit_heads", "vit_dim_head", "vit_mlp_dim",
                                           "perceiver_depth", "perceiver_heads", "perceiver_dim_head")}
    (root / "radbench_config.json").write_text(json.dumps(vision))
    return root


def test_released_layout_loads_through_the_public_path(
    adapter: radfm.RadFMAdapter, requests_: list[Request], tmp_path: Path
) -> None:
    keys = set(adapter.model.state_dict())
    for key in ("lang_model.model.embed_tokens.weight", "lang_model.lm_head.weight", "embedding_layer.weight",
                "embedding_layer.figure_token_weight", "embedding_layer.fc.weight",
                "embedding_layer.vision_encoder.to_patch_embedding.1.weight",
                "embedding_layer.vision_encoder.to_patch_embedding.2.weight",
                "embedding_layer.vision_encoder.pos_embedding.dep_embed.weight",
                "embedding_layer.vision_encoder.transformer.layers.0.0.fn.to_qkv.weight",
                "embedding_layer.vision_encoder.transformer.layers.0.0.fn.to_out.0.weight",
                "embedding_layer.vision_encoder.transformer.layers.0.1.fn.net.3.weight",
                "embedding_layer.perceiver.latents", "embedding_layer.perceiver.layers.0.0.to_kv.weight",
                "embedding_layer.perceiver.layers.0.1.1.weight", "embedding_layer.perceiver.norm.weight"):
        assert key in keys, key
    assert adapter.model.embedding_layer.weight is adapter.model.lang_model.model.embed_tokens.weight

    root = _write_released_layout(adapter, tmp_path)
    loaded = radfm.RadFMAdapter.from_args(checkpoint=str(root))
    assert loaded.source["keys"]["dropped_stale"].count("embedding_layer.") >= 4
    assert loaded.fingerprint() != adapter.fingerprint()
    assert loaded.fingerprint() == radfm.RadFMAdapter.from_args(checkpoint=str(root / "pytorch_model.bin")).fingerprint()
    assert loaded.generate(requests_[:3]) == adapter.generate(requests_[:3])


def test_wrong_keys_are_named_in_one_line(adapter: radfm.RadFMAdapter, tmp_path: Path) -> None:
    root = _write_released_layout(adapter, tmp_path)
    state = torch.load(root / "pytorch_model.bin", weights_only=True)
    del state["embedding_layer.fc.weight"]
    state["embedding_layer.surprise.weight"] = torch.zeros(1)
    torch.save(state, root / "pytorch_model.bin")
    with pytest.raises(UsageError) as info:
        radfm.RadFMAdapter.from_args(checkpoint=str(root))
    message = str(info.value)
    assert "\n" not in message
    assert "embedding_layer.fc.weight" in message and "embedding_layer.surprise.weight" in message


def test_missing_files_give_one_line_naming_them(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="pytorch_model.bin"):
        radfm.RadFMAdapter.from_args(checkpoint=str(tmp_path))
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(UsageError, match="tokenizer.model"):
        radfm.RadFMAdapter.from_args(checkpoint=str(tmp_path))
    with pytest.raises(UsageError, match="dtype"):
        radfm.RadFMAdapter.from_args(preset="tiny-random", dtype="fp8")
    with pytest.raises(UsageError, match="unknown --model-args"):
        radfm.RadFMAdapter.from_args(preset="tiny-random", checkpont="x")


def test_bf16_runs_on_cpu(requests_: list[Request]) -> None:
    bf16 = radfm.RadFMAdapter.from_args(preset="tiny-random", dtype="bf16")
    assert bf16.fingerprint() != radfm.RadFMAdapter.tiny_random().fingerprint()
    assert len(bf16.generate(requests_[:2])) == 2


def test_cli_run_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = cli.main(["run", "--model", "radfm", "--model-args", "preset=tiny-random", "--task", "vqa",
                     "--dataset", "demo", "--limit", "4", "--output", str(out), "--quiet"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n_samples"] == 4
    assert results["model"]["fingerprint"].startswith("tiny-")
    assert len((out / "predictions.jsonl").read_text().splitlines()) == 4


def test_a_split_released_checkpoint_streams_each_tensor_to_its_device(
    adapter: radfm.RadFMAdapter, requests_: list[Request], tmp_path: Path
) -> None:
    """device_map=auto's loading path: built without weights, each checkpoint tensor put straight on its device."""
    from tests.support.devices import CPU, META, alternating

    root = _write_released_layout(adapter, tmp_path)
    whole = radfm.RadFMAdapter.from_args(checkpoint=str(root))
    args = {"checkpoint": str(root)}
    devices = alternating(whole, CPU)
    split = radfm.RadFMAdapter.from_checkpoint(args, CPU, torch.float32, 4, devices=devices, check_memory=False)
    assert split.fingerprint() == whole.fingerprint() and split.placement["split_by"] == radfm.LAYERS
    assert split.source["keys"] == whole.source["keys"]
    assert split.model.embedding_layer.weight is split.model.lang_model.model.embed_tokens.weight  # re-tied
    assert split.generate(requests_[:3]) == whole.generate(requests_[:3])
    # with every other layer on meta, those layers' weights never existed in host memory
    metas = radfm.RadFMAdapter.from_checkpoint(args, CPU, torch.float32, 4, devices=alternating(whole, META),
                                               check_memory=False)
    layers = metas.model.get_submodule(radfm.LAYERS)
    assert [layer.self_attn.q_proj.weight.device for layer in layers] == [META, CPU] * (len(layers) // 2)
    assert metas.model.lang_model.lm_head.weight.device == CPU
    assert torch.equal(metas.model.embedding_layer.figure_token_weight, whole.model.embedding_layer.figure_token_weight)
    rotary = metas.model.lang_model.model.rotary_emb.inv_freq
    assert rotary.device == CPU and torch.equal(rotary, whole.model.lang_model.model.rotary_emb.inv_freq)
    # the plan made before any weight existed equals the one made from the loaded model
    assert whole.spread(devices, check_memory=False).placement == split.placement
