"""MedVInT-TD: a tiny checkpoint in the released layout (peft LoRA keys, ``llamacasual.`` prefix, stale
rotary buffers), loaded through the public path, checked against a transcription of the authors'
``QA_model`` forward (ModifiedResNet trunk, DETR ``forward_pre`` decoder, prefix before BOS).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from radbench.cli import main
from radbench.errors import UsageError
from radbench.models import tiny
from radbench.models.medvint import (
    LM_PREFIX,
    MedVInTAdapter,
    convert_state_dict,
    render_prompt,
)
from radbench.store import PREDICTIONS, read_jsonl
from radbench.types import ImageRef, Request, Segment, Turn

RANK = 2
ALPHA = 32.0


class AuthorsBottleneck(nn.Module):
    """``blocks.Bottleneck`` as PMC-VQA has it."""

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
        self.downsample = None
        if stride > 1 or inplanes != planes * AuthorsBottleneck.expansion:
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.avgpool(out)
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu3(out)


class AuthorsModifiedResNet(nn.Module):
    """``blocks.ModifiedResNet`` (children order matters: QA_model keeps ``children()[:-2]``)."""

    def __init__(self, layers: list[int], width: int, image_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.attnpool = nn.Linear(width * 32, 16)  # stands in for AttentionPool2d: cut off by [:-2] anyway

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        layers = [AuthorsBottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * AuthorsBottleneck.expansion
        layers += [AuthorsBottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)


class AuthorsDecoderLayer(nn.Module):
    """``transformer.TransformerDecoderLayer.forward_pre`` (dropout inactive in eval)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.1)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=0.1)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(0.1)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d_model), nn.LayerNorm(d_model), nn.LayerNorm(d_model)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        tgt2 = self.norm1(tgt)
        q = k = tgt2
        tgt2, _ = self.self_attn(q, k, value=tgt2)
        tgt = tgt + tgt2
        tgt2 = self.norm2(tgt)
        tgt2, _ = self.multihead_attn(query=tgt2, key=memory, value=memory)
        tgt = tgt + tgt2
        tgt2 = self.norm3(tgt)
        tgt2 = self.linear2(self.dropout(F.relu(self.linear1(tgt2))))
        return tgt + tgt2


class AuthorsQAModel(nn.Module):
    """``QA_model`` (PMC-CLIP branch) without peft: ``generate`` returns the logits, as theirs does."""

    def __init__(self, adapter: MedVInTAdapter) -> None:
        super().__init__()
        cfg = adapter.cfg
        resnet = AuthorsModifiedResNet(list(cfg.resnet_layers) + [1], cfg.resnet_width, cfg.image_size)
        self.vision_model = nn.Sequential(*list(resnet.children())[:-2])
        self.query_embed = nn.Embedding(cfg.queries, cfg.features)
        self.decoder = nn.Module()
        self.decoder.layers = nn.ModuleList(
            [AuthorsDecoderLayer(cfg.features, cfg.decoder_heads, cfg.decoder_ff) for _ in range(cfg.decoder_layers)])
        self.decoder.norm = nn.LayerNorm(cfg.features)
        self.fc_l1 = nn.Linear(cfg.features, cfg.features)
        self.fc_l2 = nn.Linear(cfg.features, cfg.hidden_size)
        self.llamacasual = adapter.model.lm  # the LM itself is transformers' LlamaForCausalLM in both

    @torch.inference_mode()
    def generate(self, input_ids: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        batch = images.shape[0]
        x = self.vision_model(images)
        features = x.flatten(2).transpose(1, 2).transpose(0, 1)  # 'b d n1 n2 -> b (n1 n2) d', then patch-first
        out = self.query_embed.weight.unsqueeze(1).repeat(1, batch, 1)
        for layer in self.decoder.layers:
            out = layer(out, features)
        features = self.decoder.norm(out).transpose(0, 1)
        features = self.fc_l2(F.relu(self.fc_l1(features)))
        embeds = torch.cat([features, self.llamacasual.get_input_embeddings()(input_ids)], dim=1)
        return self.llamacasual(inputs_embeds=embeds).logits


def released_state(adapter: MedVInTAdapter, seed: int = 0) -> dict[str, torch.Tensor]:
    """The adapter's weights as the HF Trainer saved QA_model: prefixes, unmerged LoRA, stale buffers."""
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    for key, value in adapter.model.state_dict().items():
        if not key.startswith("lm."):
            out[key] = value.clone()
            continue
        name = LM_PREFIX + key[len("lm."):]
        if key.endswith(("self_attn.q_proj.weight", "self_attn.v_proj.weight")):
            a = torch.randn(RANK, value.shape[1], generator=generator) * 0.1
            b = torch.randn(value.shape[0], RANK, generator=generator) * 0.1
            stem = name[: -len(".weight")]
            out[stem + ".weight"] = value - (ALPHA / RANK) * (b @ a)  # so merging gives the adapter's weight back
            out[stem + ".lora_A.weight"], out[stem + ".lora_B.weight"] = a, b
        else:
            out[name] = value.clone()
    for i in range(adapter.cfg.num_hidden_layers):
        out[f"{LM_PREFIX}model.layers.{i}.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    return out


def write_released(folder: Path, seed: int = 0) -> MedVInTAdapter:
    adapter = MedVInTAdapter.tiny_random(seed=seed)
    (folder / "ckpt").mkdir(parents=True)
    torch.save(released_state(adapter, seed), folder / "ckpt" / "pytorch_model.bin")
    tiny.train_sentencepiece(folder / "tokenizer")
    (folder / "tokenizer" / "config.json").write_text(json.dumps(
        {"num_attention_heads": adapter.cfg.num_attention_heads, "rms_norm_eps": adapter.cfg.rms_norm_eps}))
    return adapter


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, MedVInTAdapter, MedVInTAdapter]:
    folder = tmp_path_factory.mktemp("medvint-td")
    preset = write_released(folder)
    loaded = MedVInTAdapter.from_args(checkpoint=str(folder / "ckpt"), tokenizer_path=str(folder / "tokenizer"),
                                      heads=str(preset.cfg.decoder_heads), device="cpu")
    return folder, preset, loaded


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("medvint-images")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)).save(root / "b.png")
    np.save(root / "ct.npy", rng.normal(0, 300, (1, 20, 20, 6)).astype(np.float32))
    return root


def ask(question: str, *refs: ImageRef, options: tuple[str, ...] = (), max_new: int = 6) -> Request:
    turn = Turn(tuple(Segment(image=r) for r in refs) + (Segment(text=question),), sample_id="q")
    return Request("q", (turn,), gen_kwargs={"max_new_tokens": max_new}, options=options)


@pytest.mark.slow
def test_released_layout_loads_with_lora_merged_and_matches_the_authors_forward(released, image_dir: Path) -> None:
    _, preset, loaded = released
    assert loaded.source["lora_pairs_merged"] == 2 * preset.cfg.num_hidden_layers
    for key, value in preset.model.state_dict().items():
        assert torch.allclose(loaded.model.state_dict()[key], value, atol=1e-6), key
    authors = AuthorsQAModel(loaded)
    missing = authors.load_state_dict({k: v for k, v in loaded.model.state_dict().items() if not k.startswith("lm.")},
                                      strict=False)
    assert missing.unexpected_keys == [] and all(k.startswith("llamacasual.") for k in missing.missing_keys)
    authors.eval()
    request = ask("Is there a pleural effusion?", ImageRef("a.png", root=str(image_dir)), max_new=4)
    prompt = render_prompt(request, choice=False)
    assert prompt == "Question: Is there a pleural effusion?The Answer is:"
    ids = loaded.tokenizer(prompt)["input_ids"]
    assert ids[0] == 1  # BOS right after the visual prefix
    from radbench import images

    assert loaded.spec.size == 512  # the released resolution (not stored in the weights)
    pixels = torch.from_numpy(images.prepare(ImageRef("a.png", root=str(image_dir)), loaded.spec).array)[None]
    theirs = authors.generate(torch.tensor([ids]), pixels)
    with torch.inference_mode():
        ours = loaded.model.lm(inputs_embeds=loaded.embed(request, ids)[None]).logits
    assert theirs.shape[1] == loaded.cfg.queries + len(ids)
    assert float((ours - theirs).abs().max()) < 1e-4
    # Greedy decoding from those logits (full recompute), stopping at id 1 or 2 as trained.
    tokens: list[int] = []
    for _ in range(4):
        with torch.inference_mode():
            step = authors.generate(torch.tensor([ids + tokens]), pixels)[0, -1]
        if int(step.argmax()) in (1, 2):
            break
        tokens.append(int(step.argmax()))
    assert loaded.generate([request]) == [loaded.tokenizer.decode(tokens, skip_special_tokens=True).strip()]


def test_lora_merge_formula_and_newer_peft_names() -> None:
    w, a, b = torch.randn(6, 5), torch.randn(2, 5), torch.randn(6, 2)
    old = {f"{LM_PREFIX}model.layers.0.self_attn.q_proj.weight": w,
           f"{LM_PREFIX}model.layers.0.self_attn.q_proj.lora_A.weight": a,
           f"{LM_PREFIX}model.layers.0.self_attn.q_proj.lora_B.weight": b}
    new = {f"{LM_PREFIX}model.layers.0.self_attn.q_proj.base_layer.weight": w,
           f"{LM_PREFIX}model.layers.0.self_attn.q_proj.lora_A.default.weight": a,
           f"{LM_PREFIX}model.layers.0.self_attn.q_proj.lora_B.default.weight": b}
    for state in (old, new):
        merged, count = convert_state_dict(state, 32.0)
        assert count == 1 and list(merged) == ["lm.model.layers.0.self_attn.q_proj.weight"]
        assert torch.allclose(merged["lm.model.layers.0.self_attn.q_proj.weight"], w + 16.0 * b @ a)
    with pytest.raises(UsageError, match="LoRA pair .* is incomplete"):
        convert_state_dict({k: v for k, v in old.items() if "lora_B" not in k}, 32.0)


def test_options_are_scored_by_letter_logits_and_open_mode_generates(released, image_dir: Path) -> None:
    _, _, loaded = released
    ref = ImageRef("a.png", root=str(image_dir))
    request = ask("Is the heart enlarged?", ref, options=("yes", "no", "maybe"))
    prompt = render_prompt(request, choice=True)
    assert prompt == "Question: Is the heart enlarged?Choices: A:yes B:no C:maybeThe Answer is:"
    answer = loaded.generate([request])[0]
    assert answer in request.options
    # The chosen option is the argmax over the letters' logits at the answer position.
    from radbench.models.medvint import letter_continuations

    ids = loaded.tokenizer(prompt)["input_ids"]
    common, firsts = letter_continuations(loaded.tokenizer, ids, prompt, 3)
    with torch.inference_mode():
        logits = loaded.model.lm(inputs_embeds=loaded.embed(request, ids + common)[None]).logits[0, -1]
    assert answer == request.options[int(logits[firsts].argmax())]
    opened = MedVInTAdapter.tiny_random(mode="open")
    assert opened.generate([request])[0] == opened.generate([replace(request, options=())])[0]
    assert opened.fingerprint() != MedVInTAdapter.tiny_random().fingerprint()  # other answers, other keys


def test_images_zero_several_and_3d(released, image_dir: Path) -> None:
    _, _, loaded = released
    a, b = ImageRef("a.png", root=str(image_dir)), ImageRef("b.png", root=str(image_dir))
    ct = ImageRef("ct.npy", kind="3d", root=str(image_dir))
    ids = loaded.tokenizer("Question: q The Answer is:")["input_ids"]
    q = loaded.cfg.queries
    assert loaded.embed(ask("q"), ids).shape[0] == len(ids)
    assert loaded.embed(ask("q", a, b), ids).shape[0] == 2 * q + len(ids)
    assert loaded.embed(ask("q", ct), ids).shape[0] == q + len(ids)
    two_slices = MedVInTAdapter.tiny_random(slices="even:2")
    assert two_slices.embed(ask("q", ct), ids).shape[0] == 2 * two_slices.cfg.queries + len(ids)
    with torch.inference_mode():
        assert not torch.equal(loaded.prefix(ask("q", a)), loaded.prefix(ask("q", b)))  # the image matters


def test_loading_errors_are_one_line(released, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _, _ = released
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    # Without the keys the released repos are used; offline and not cached, one line names the repo.
    with pytest.raises(UsageError, match="xmcmic/MedVInT-TD is not in the cache"):
        MedVInTAdapter.from_args()
    with pytest.raises(UsageError, match="chaoyi-wu/PMC_LLAMA_7B is not in the cache"):
        MedVInTAdapter.from_args(checkpoint=str(folder / "ckpt"))
    with pytest.raises(UsageError, match="mode="):
        MedVInTAdapter.from_args(preset="tiny-random", mode="beam")
    state = torch.load(folder / "ckpt" / "pytorch_model.bin", weights_only=True)
    state["fc_l3.weight"] = state.pop("fc_l2.weight")
    (tmp_path / "bad").mkdir()
    torch.save(state, tmp_path / "bad" / "pytorch_model.bin")
    with pytest.raises(UsageError) as err:
        MedVInTAdapter.from_args(checkpoint=str(tmp_path / "bad"), tokenizer_path=str(folder / "tokenizer"), heads="2")
    assert "\n" not in str(err.value) and "missing keys: fc_l2.weight" in str(err.value) and "fc_l3.weight" in str(err.value)


def test_fingerprint_identifies_the_files(released, tmp_path: Path) -> None:
    folder, _, loaded = released
    args = {"tokenizer_path": str(folder / "tokenizer"), "heads": "2", "device": "cpu"}
    assert MedVInTAdapter.from_args(checkpoint=str(folder / "ckpt"), **args).fingerprint() == loaded.fingerprint()
    write_released(tmp_path, seed=1)
    other = MedVInTAdapter.from_args(checkpoint=str(tmp_path / "ckpt"), **args)
    assert other.fingerprint() != loaded.fingerprint()


def test_demo_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["run", "--model", "medvint", "--model-args", "preset=tiny-random", "--task", "vqa", "--dataset", "demo",
                 "--limit", "4", "--gen-kwargs", "max_new_tokens=8", "--output", str(out), "--quiet"])
    assert code == 0
    records = read_jsonl(out / PREDICTIONS)[0]
    assert len(records) == 4 and all(r["error"] is None for r in records)
    assert {r["prediction"] for r in records if r["id"].endswith("00001")} <= {"yes", "no"}  # a closed question
