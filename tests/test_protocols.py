"""``protocol=authors`` against ``protocol=radbench``, and ``--gen-kwargs num_beams=N`` on every HF adapter.

The authors' rules checked here come from their public code (docs/models.md names the files):
RadFM's generate stops at the shipped config's EOS (1); MedVInT's ``test.py`` reads the option from
the whole-sequence argmax with ``difflib``; OpenFlamingo's ``evaluate.py`` decodes with 3 beams and
``length_penalty=0``; Med-Flamingo's demo keeps the special tokens it decoded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from radbench import compare  # noqa: E402
from radbench.errors import UsageError  # noqa: E402
from radbench.models import decoding  # noqa: E402
from radbench.models import flamingo as fl  # noqa: E402
from radbench.models.llava_med import LlavaMedAdapter  # noqa: E402
from radbench.models.medvint import MedVInTAdapter, generation_eos, most_similar  # noqa: E402
from radbench.models.radfm import RadFMAdapter  # noqa: E402
from radbench.tasks.demo import DemoDataset  # noqa: E402
from radbench.tasks.vqa import VQATask  # noqa: E402
from radbench.types import Request  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def demo_requests(**gen_kwargs: Any) -> list[Request]:
    """Three 2D demo questions (one with two images), open-ended."""
    samples = [s for s in DemoDataset().load("vqa", "test", None) if s.images and s.images[0].kind != "3d"]
    picked = samples[:2] + [s for s in samples if len(s.images) == 2][:1]
    task = VQATask(gen_kwargs=gen_kwargs)
    return [Request(r.sample_id, r.turns, r.gen_kwargs, task=r.task) for r in (task.render(s) for s in picked)]


def biased(adapter: Any, token: int) -> list[list[int]]:
    """Make ``token`` every step's argmax and record the token rows the adapter decodes."""
    inner, seen = adapter._step, []

    def step(*args):  # type: ignore[no-untyped-def]
        logits, cache = inner(*args)
        logits = logits.clone()
        logits[:, token] += 1.0e4
        return logits, cache

    adapter._step = step
    decode = adapter.tokenizer.decode
    adapter.tokenizer.decode = lambda ids, **kw: (seen.append(list(ids)), decode(ids, **kw))[1]
    return seen


@pytest.mark.parametrize("protocol, stops_at_1, stops_at_2", [("radbench", False, True), ("authors", True, False)])
def test_radfm_stops_where_each_protocol_says(protocol: str, stops_at_1: bool, stops_at_2: bool) -> None:
    request = demo_requests(max_new_tokens=4)[:1]
    for token, stops in ((1, stops_at_1), (2, stops_at_2)):
        adapter = RadFMAdapter.from_args(preset="tiny-random", protocol=protocol)
        seen = biased(adapter, token)
        adapter.generate(request)
        length = 200 if protocol == "authors" else 4  # the authors' generate ran 200 tokens, whatever the task asked
        assert seen == [[] if stops else [token] * length], (protocol, token)
    assert adapter.describe()["decoding"]["eos_token_id"] == (1 if protocol == "authors" else 2)


def test_medvint_open_questions_stop_at_the_lm_generation_config_under_authors(tmp_path: Path) -> None:
    request = [Request(r.sample_id, r.turns, r.gen_kwargs, task=r.task) for r in demo_requests(max_new_tokens=3)[:1]]
    radbench = MedVInTAdapter.tiny_random(mode="open")
    authors = MedVInTAdapter.tiny_random(mode="open", protocol="authors")
    authors.lm_eos = [1]  # as a decapoda-style generation config says
    for adapter, token, stops in ((radbench, 1, True), (radbench, 2, True), (authors, 1, True), (authors, 2, False)):
        seen = biased(adapter, token)
        adapter.generate(request)
        length = 50 if adapter.protocol == "authors" else 3  # generate_long_sentence: max_new_tokens=50
        assert seen[-1] == ([] if stops else [token] * length), (adapter.protocol, token)
        adapter._step = decoding.hf_step(adapter.model.lm)
    authors.lm_eos = None
    with pytest.raises(UsageError, match="generation_config.json"):
        authors.generate(request)
    # what generate would read: generation_config.json first, then config.json
    (tmp_path / "config.json").write_text(json.dumps({"eos_token_id": 2}))
    assert generation_eos(tmp_path) == [2]
    (tmp_path / "generation_config.json").write_text(json.dumps({"eos_token_id": 1}))
    assert generation_eos(tmp_path) == [1]
    assert generation_eos(tmp_path / "missing") is None


def test_difflib_choice_keeps_the_authors_quirks() -> None:
    lettered = [" A:Brain", " B:Aorta", " C:no", " D:yes"]
    assert most_similar(lettered, "D") == 3
    # "B" is as similar to " A:Brain" (its capital B) as to " B:Aorta": the first wins, as in test.py
    assert most_similar(lettered, "B") == 0
    assert most_similar(lettered, "Z") is None


def test_medvint_authors_choice_is_the_last_character_of_the_whole_argmax() -> None:
    import difflib

    from radbench.models.medvint import render_prompt

    adapter = MedVInTAdapter.tiny_random(protocol="authors")
    base = demo_requests(max_new_tokens=3)
    options = ("left lung", "right lung", "heart", "no finding")
    requests = [Request(r.sample_id, r.turns, r.gen_kwargs, options=options, task=r.task) for r in base]
    answers = adapter.generate(requests)
    for request, answer in zip(requests, answers):  # re-derived one request at a time, no padding
        ids = adapter.tokenizer(render_prompt(request, choice=True))["input_ids"]
        with torch.inference_mode():
            logits = adapter.model.lm(inputs_embeds=adapter.embed(request, ids)[None]).logits[0]
        pred = adapter.tokenizer.decode(logits.argmax(-1).tolist(), skip_special_tokens=True)[-1]
        ratios = [difflib.SequenceMatcher(None, f" {'ABCD'[i]}:{o}", pred).ratio() for i, o in enumerate(options)]
        expected = options[ratios.index(max(ratios))] if max(ratios) > 0 else pred
        assert answer == expected
    assert adapter.generate(requests[:1]) == answers[:1]  # batch-invariant too
    assert "difflib" in adapter.describe()["decoding"]["options"]


def test_openflamingo_authors_decode_with_the_eval_beams() -> None:
    requests = demo_requests()
    authors = fl.OpenFlamingoAdapter.tiny_random(protocol="authors")
    explicit = fl.OpenFlamingoAdapter.tiny_random()
    beams = [Request(r.sample_id, r.turns, {"num_beams": 3, "length_penalty": 0.0, "max_new_tokens": 5}, task=r.task)
             for r in requests]
    assert authors.generate(requests) == explicit.generate(beams)
    assert authors.decoding_of(requests[0]) == decoding.Decoding(5, 3, 0.0, False)
    report = Request("r", requests[0].turns, {}, task="report")
    assert authors.decoding_of(report).max_new_tokens == 20  # evaluate_captioning's length


def test_medflamingo_authors_answer_keeps_the_special_tokens_it_decoded() -> None:
    adapter = fl.MedFlamingoAdapter.tiny_random(protocol="authors")
    tok = adapter.tokenizer
    word = tok("lung", add_special_tokens=False)["input_ids"]
    settings = decoding.Decoding(max_new_tokens=len(word) + 1)
    assert adapter.answer(word, settings, "vqa") == tok.decode(word + [adapter.eoc_id]).replace("<unk> ", "").strip()
    assert adapter.answer(word, settings, "vqa").endswith(fl.EOC)
    full = (word * 2)[: len(word) + 1]  # ran to its limit: no EOC was generated
    assert not adapter.answer(full, settings, "vqa").endswith(fl.EOC)
    assert fl.MedFlamingoAdapter.tiny_random().answer(word, settings, "vqa") == tok.decode(word).strip()


def test_protocol_is_recorded_fingerprinted_and_breaks_comparability() -> None:
    radbench, authors = RadFMAdapter.tiny_random(), RadFMAdapter.tiny_random(protocol="authors")
    assert radbench.describe()["protocol"] == "radbench" and authors.describe()["protocol"] == "authors"
    assert RadFMAdapter.tiny_random(protocol="radbench").fingerprint() == radbench.fingerprint()
    assert authors.fingerprint() != radbench.fingerprint()
    with pytest.raises(UsageError, match="protocol='theirs'"):
        RadFMAdapter.tiny_random(protocol="theirs")
    run = {"task": {"name": "vqa"}, "model": radbench.describe(), "metric_configs": {}}
    other = {**run, "model": authors.describe()}
    assert compare.protocol_differences(run, other, []) == ["model.protocol: radbench (base) vs authors (new)"]
    legacy = {**run, "model": {"name": "baseline"}}  # no protocol recorded: radbench's
    assert compare.protocol_differences(run, legacy, []) == []


ADAPTERS = {
    "radfm": lambda: RadFMAdapter.tiny_random(),
    "openflamingo": lambda: fl.OpenFlamingoAdapter.tiny_random(),
    "medflamingo": lambda: fl.MedFlamingoAdapter.tiny_random(),
    "llava-med": lambda: LlavaMedAdapter.tiny_random(),
    "medvint": lambda: MedVInTAdapter.tiny_random(mode="open"),
}


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_num_beams_is_batch_invariant_on_every_adapter(name: str) -> None:
    adapter = ADAPTERS[name]()
    requests = demo_requests(max_new_tokens=5, num_beams=3)
    batched = adapter.generate(requests)
    assert batched == [adapter.generate([r])[0] for r in requests]
    greedy = adapter.generate(demo_requests(max_new_tokens=5))
    assert len(batched) == len(greedy) == len(requests)
    mixed = [requests[0], demo_requests(max_new_tokens=5)[1]]
    with pytest.raises(UsageError, match="mixes beam settings"):
        adapter.generate(mixed)
