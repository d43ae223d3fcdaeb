"""LLaVA-Med: a tiny checkpoint in the released ``llava_mistral`` layout, loaded by key conversion.

The reference here is the authors' algorithm rebuilt from plain modules (MistralForCausalLM, a
CLIPVisionModel and the ``mm_projector`` Sequential, all under the released key names): features of
CLIP's penultimate layer without CLS, projected, spliced at the ``-200`` placeholder of
``tokenizer_image_token``. The adapter's converted ``LlavaForConditionalGeneration`` must give the
same logits and the same greedy tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from radbench.cli import main
from radbench.errors import UsageError
from radbench.models import tiny
from radbench.images.preprocessing import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from radbench.models.llava_med import LlavaMedAdapter, preprocess_spec, prepare_images, render_prompt, tiny_meta
from radbench.models.tokenizers import load_llama_tokenizer
from radbench.store import PREDICTIONS, RESULTS, read_jsonl
from radbench.types import ImageRef, Request, Segment, Turn

IMAGE_TOKEN_INDEX = -200


def tokenizer_image_token(prompt: str, tokenizer, image_token_index: int = IMAGE_TOKEN_INDEX) -> list[int]:
    """Verbatim from LLaVA-Med's ``llava/mm_utils.py``."""
    prompt_chunks = [tokenizer(chunk).input_ids for chunk in prompt.split("<image>")]

    def insert_separator(X, sep):  # noqa: N803 (the authors' names)
        return [ele for sublist in zip(X, [sep] * len(X)) for ele in sublist][:-1]

    input_ids = []
    offset = 0
    if len(prompt_chunks) > 0 and len(prompt_chunks[0]) > 0 and prompt_chunks[0][0] == tokenizer.bos_token_id:
        offset = 1
        input_ids.append(prompt_chunks[0][0])
    for x in insert_separator(prompt_chunks, [image_token_index] * (offset + 1)):
        input_ids.extend(x[offset:])
    return input_ids


class Original(torch.nn.Module):
    """LlavaMistralForCausalLM's parts under their released names, and its splice algorithm."""

    def __init__(self, vocab: int, seed: int) -> None:
        super().__init__()
        from transformers import CLIPVisionModel, MistralConfig, MistralForCausalLM

        meta = tiny_meta(vocab)
        with tiny.seeded(seed):
            self.lm = MistralForCausalLM(MistralConfig(
                vocab_size=vocab, hidden_size=meta["hidden_size"], intermediate_size=meta["intermediate_size"],
                num_hidden_layers=meta["num_hidden_layers"], num_attention_heads=meta["num_attention_heads"],
                num_key_value_heads=meta["num_key_value_heads"], rms_norm_eps=meta["rms_norm_eps"],
                rope_theta=meta["rope_theta"], max_position_embeddings=meta["max_position_embeddings"],
                sliding_window=None, tie_word_embeddings=False))
            self.clip = CLIPVisionModel(tiny.tiny_clip_vision_config(hidden_size=64, intermediate_size=64,
                                                                     num_attention_heads=1))
            self.projector = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.GELU(), torch.nn.Linear(64, 64))
        self.meta = meta

    def released_state_dict(self) -> dict[str, torch.Tensor]:
        out = {k: v for k, v in self.lm.state_dict().items()}  # model.* and lm_head.weight, as released
        out.update({f"model.vision_tower.vision_tower.vision_model.{k}": v for k, v in self.clip.state_dict().items()})
        out.update({f"model.mm_projector.{k}": v for k, v in self.projector.state_dict().items()})
        out["model.vision_tower.vision_tower.vision_model.embeddings.position_ids"] = torch.arange(5)[None]  # 4.36 buffer
        return {k: v.contiguous() for k, v in out.items()}

    @torch.inference_mode()
    def logits(self, ids: list[int], pixel_values: torch.Tensor) -> torch.Tensor:
        hidden = self.clip(pixel_values, output_hidden_states=True).hidden_states[-2][:, 1:]
        features = self.projector(hidden)
        embed = self.lm.get_input_embeddings()
        parts, image = [], 0
        for token in ids:
            if token == IMAGE_TOKEN_INDEX:
                parts.append(features[image])
                image += 1
            else:
                parts.append(embed(torch.tensor([token])))
        return self.lm(inputs_embeds=torch.cat(parts)[None]).logits[0]


def write_released(folder: Path, seed: int = 0) -> Original:
    """A tiny ``microsoft/llava-med-v1.5-mistral-7b`` folder: two shards + index, config, tokenizer."""
    tiny.train_sentencepiece(folder)
    vocab = len(load_llama_tokenizer("llava-med", folder))
    original = Original(vocab, seed)
    state = original.released_state_dict()
    keys = sorted(state)
    halves = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2 :]}
    for name, names in halves.items():
        save_file({k: state[k].to(torch.float16) for k in names}, str(folder / name))
    weight_map = {k: name for name, names in halves.items() for k in names}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps(original.meta))
    return original


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Original, LlavaMedAdapter]:
    folder = tmp_path_factory.mktemp("llava-med-v1.5")
    original = write_released(folder)
    original.half().float()  # the shards are fp16, as released: compare against the same rounding
    adapter = LlavaMedAdapter.from_args(checkpoint=str(folder), device="cpu")
    return folder, original, adapter


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("llava-images")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 36, 3), dtype=np.uint8)).save(root / "wide.png")
    Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)).save(root / "grey.png")
    np.save(root / "ct.npy", rng.normal(0, 300, (1, 24, 24, 5)).astype(np.float32))
    return root


def ask(question: str, *refs: ImageRef, exemplars: tuple[Turn, ...] = (), max_new: int = 6) -> Request:
    query = Turn(tuple(Segment(image=r) for r in refs) + (Segment(text=question),), sample_id="q")
    return Request("q", exemplars + (query,), gen_kwargs={"max_new_tokens": max_new})


def test_converted_checkpoint_gives_the_original_splice_logits(released, image_dir: Path) -> None:
    _, original, adapter = released
    ref = ImageRef("wide.png", root=str(image_dir))
    request = ask("Is there a pleural effusion?", ref)
    prompt = render_prompt(request)
    assert prompt == "[INST] <image>\nIs there a pleural effusion? [/INST]"
    base_ids = tokenizer_image_token(prompt, adapter.tokenizer)
    ids, pixels = adapter.encode(request)
    expanded = [t for b in base_ids for t in ([adapter.image_token_id] * 4 if b == IMAGE_TOKEN_INDEX else [b])]
    assert ids == expanded and ids[0] == 1 and ids.count(adapter.image_token_id) == 4
    pixel_values = torch.from_numpy(np.stack(pixels))
    with torch.inference_mode():
        ours = adapter.model(input_ids=torch.tensor([ids]), pixel_values=pixel_values).logits[0]
    theirs = original.logits(base_ids, pixel_values)
    assert ours.shape == (len(ids), adapter.image_token_id + 1)
    assert float((ours[:, : adapter.image_token_id] - theirs).abs().max()) < 1e-5
    # The same greedy answer as the authors' loop (full recompute, EOS 2).
    ids_ref, out = list(base_ids), []
    for _ in range(6):
        token = int(original.logits(ids_ref, pixel_values)[-1].argmax())
        if token == 2:
            break
        out.append(token)
        ids_ref.append(token)
    assert adapter.generate([request]) == [adapter.tokenizer.decode(out, skip_special_tokens=True).strip()]


def test_local_vision_path_replaces_the_embedded_tower(released, image_dir: Path, tmp_path: Path) -> None:
    folder, original, adapter = released
    original.clip.save_pretrained(tmp_path / "clip")
    via_path = LlavaMedAdapter.from_args(checkpoint=str(folder), vision_path=str(tmp_path / "clip"), device="cpu")
    request = ask("Which side?", ImageRef("grey.png", root=str(image_dir)))
    ids, pixels = via_path.encode(request)
    with torch.inference_mode():
        a = via_path.model(input_ids=torch.tensor([ids]), pixel_values=torch.from_numpy(np.stack(pixels))).logits
        b = adapter.model(input_ids=torch.tensor([ids]), pixel_values=torch.from_numpy(np.stack(pixels))).logits
    assert float((a - b).abs().max()) < 1e-2  # fp32 CLIP vs the shards' fp16 copy
    assert via_path.fingerprint() != adapter.fingerprint()


def test_preprocessing_pads_with_the_mean_colour_and_slices_volumes(image_dir: Path) -> None:
    spec = preprocess_spec(28, pad=True)
    (wide,) = prepare_images([ImageRef("wide.png", root=str(image_dir))], spec)
    assert wide.shape == (3, 28, 28)
    corner = wide[:, 0, 0] * np.array(OPENAI_CLIP_STD) + np.array(OPENAI_CLIP_MEAN)
    assert np.allclose(corner * 255, (122, 116, 104), atol=1.5)  # the padding band, mean colour
    ct = ImageRef("ct.npy", kind="3d", root=str(image_dir))
    (middle,) = prepare_images([ct], spec)
    assert middle.shape == (3, 28, 28) and np.isfinite(middle).all()
    three = prepare_images([ct], preprocess_spec(28, pad=True, slices="even:3"))
    assert len(three) == 3


def test_a_volume_with_several_slices_gets_one_image_token_run_each(image_dir: Path) -> None:
    adapter = LlavaMedAdapter.from_args(preset="tiny-random", slices="even:2")
    ids, pixels = adapter.encode(ask("How many nodules?", ImageRef("ct.npy", kind="3d", root=str(image_dir))))
    assert len(pixels) == 2 and ids.count(adapter.image_token_id) == 2 * adapter.image_tokens
    assert adapter.fingerprint() != LlavaMedAdapter.from_args(preset="tiny-random").fingerprint()


def test_prompts_several_images_and_text_only_exemplars(image_dir: Path) -> None:
    ref = ImageRef("wide.png", root=str(image_dir))
    exemplar = Turn((Segment(image=ref), Segment(text="Is the heart enlarged?")), answer="no", sample_id="e")
    prompt = render_prompt(ask("Which side?", ref, ref, exemplars=(exemplar,)))
    assert prompt == "[INST] <image>\n<image>\nQ: Is the heart enlarged?\nA: no\n\nWhich side? [/INST]"
    assert render_prompt(ask("No image here?")) == "[INST] No image here? [/INST]"


def test_loading_errors_are_one_line(tmp_path: Path, released, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, _, _ = released
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    # No checkpoint= means the released repo; offline and not cached, one line names it and the cache.
    with pytest.raises(UsageError, match=r"microsoft/llava-med-v1\.5-mistral-7b is not in the cache .*empty-hub-cache"):
        LlavaMedAdapter.from_args()
    with pytest.raises(UsageError, match="does not exist"):
        LlavaMedAdapter.from_args(checkpoint=str(tmp_path / "nope"))
    with pytest.raises(UsageError, match="unknown --model-args"):
        LlavaMedAdapter.from_args(preset="tiny-random", lora="x")
    broken = tmp_path / "broken"
    broken.mkdir()
    for item in folder.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    (broken / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(UsageError, match="lacks model-00002-of-00002.safetensors"):
        LlavaMedAdapter.from_args(checkpoint=str(broken))
    # A renamed key is reported by name, as missing and unexpected, in one line.
    from safetensors.torch import load_file

    shard = broken / "model-00001-of-00002.safetensors"
    (broken / "model-00002-of-00002.safetensors").write_bytes((folder / "model-00002-of-00002.safetensors").read_bytes())
    state = load_file(str(shard))
    key = next(k for k in state if "mm_projector.0.weight" in k or k == "lm_head.weight")
    state[key.replace("weight", "wieght")] = state.pop(key)
    save_file(state, str(shard))
    with pytest.raises(UsageError) as err:
        LlavaMedAdapter.from_args(checkpoint=str(broken))
    message = str(err.value)
    assert "\n" not in message and "missing keys" in message and "wieght" in message


def test_fingerprint_identifies_the_files(released, tmp_path: Path) -> None:
    folder, _, adapter = released
    assert LlavaMedAdapter.from_args(checkpoint=str(folder), device="cpu").fingerprint() == adapter.fingerprint()
    other = tmp_path / "other"
    other.mkdir()
    write_released(other, seed=1)
    assert LlavaMedAdapter.from_args(checkpoint=str(other), device="cpu").fingerprint() != adapter.fingerprint()


def test_demo_run_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code = main(["run", "--model", "llava-med", "--model-args", "preset=tiny-random", "--task", "vqa",
                 "--dataset", "demo", "--limit", "4", "--gen-kwargs", "max_new_tokens=8", "--output", str(out), "--quiet"])
    assert code == 0
    records = read_jsonl(out / PREDICTIONS)[0]
    assert len(records) == 4 and all(r["error"] is None for r in records)
    result = json.loads((out / RESULTS).read_text())
    assert result["model"]["name"] == "llava-med" and result["model"]["source"]["preset"] == "tiny-random"
