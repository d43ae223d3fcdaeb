"""BLEU and ROUGE: parity with the reference implementations, caching, parallel runs, bootstrap.

Expected values come from pycocoevalcap and rouge-score themselves, called in the test.
"""

from __future__ import annotations

import contextlib
import io
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radbench.metrics import bleu as bleu_module
from radbench.metrics import parallel
from radbench.metrics import rouge as rouge_module
from radbench.metrics.base import ScoreInput
from radbench.metrics.bleu import Bleu, corpus_bleu
from radbench.metrics.rouge import Rouge, lcs_length

VOCAB = "no pneumothorax mild cardiomegaly with bilateral pleural effusions . the lungs are clear Heart size is normal".split()


def random_corpus(seed: int, n: int) -> tuple[list[str], list[list[str]]]:
    """Hypotheses of every length class coco and nltk disagree on: empty, 1-3 tokens, longer."""
    rng = random.Random(seed)
    hyps, refs = [], []
    for _ in range(n):
        length = rng.choice([0, 0, 1, 2, 3, rng.randint(4, 25), rng.randint(4, 25)])
        hyps.append(" ".join(rng.choices(VOCAB, k=length)))
        refs.append([" ".join(rng.choices(VOCAB, k=rng.randint(1, 25))) for _ in range(rng.choice([1, 1, 2, 3]))])
    return hyps, refs


def coco_bleu(hyps: list[str], refs: list[list[str]]) -> tuple[list[float], list[list[float]]]:
    from pycocoevalcap.bleu.bleu import Bleu as CocoBleu

    with contextlib.redirect_stdout(io.StringIO()):  # coco prints its statistics
        score, per_sentence = CocoBleu(4).compute_score(dict(enumerate(refs)), {i: [h] for i, h in enumerate(hyps)})
    return list(score), per_sentence


@pytest.mark.parametrize("seed", range(5))
def test_bleu_equals_pycocoevalcap_on_random_inputs_with_empty_and_short_hypotheses(seed: int) -> None:
    hyps, refs = random_corpus(seed, 300)
    assert sum(1 for h in hyps if not h) > 20 and sum(1 for h in hyps if 0 < len(h.split()) < 4) > 20
    expected, expected_per_sentence = coco_bleu(hyps, refs)
    assert corpus_bleu(hyps, refs) == pytest.approx(expected, abs=1e-9)
    records = Bleu(cache=False).score([ScoreInput(str(i), h, tuple(r)) for i, (h, r) in enumerate(zip(hyps, refs))])
    for n in range(1, 5):
        assert [r[f"bleu{n}"] for r in records] == pytest.approx(expected_per_sentence[n - 1], abs=1e-9)


def test_nltk_corpus_bleu_is_not_the_coco_convention_on_short_hypotheses() -> None:
    """Why radbench does coco's arithmetic: nltk counts a denominator of 1 for a too-short hypothesis."""
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu

    refs = [["the heart is normal in size"], ["no pleural effusion is seen today"]]
    hyps = ["the heart is normal in size", "no effusion"]
    nltk_value = nltk_corpus_bleu([[r[0].split()] for r in refs], [h.split() for h in hyps])
    ours = corpus_bleu(hyps, refs)[3]
    assert ours == pytest.approx(coco_bleu(hyps, refs)[0][3], abs=1e-12)
    assert abs(ours - nltk_value) > 0.05


def test_bleu_of_all_empty_predictions_is_zero_like_coco() -> None:
    hyps, refs = ["", ""], [["a b c d"], ["e f"]]
    assert corpus_bleu(hyps, refs) == pytest.approx(coco_bleu(hyps, refs)[0], abs=1e-12)
    assert corpus_bleu(hyps, refs)[0] < 1e-9


def test_bleu_bootstrap_weights_equal_the_corpus_score_of_each_resample() -> None:
    hyps, refs = random_corpus(7, 60)
    metric = Bleu(cache=False)
    records = metric.score([ScoreInput(str(i), h, tuple(r)) for i, (h, r) in enumerate(zip(hyps, refs))])
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(records), size=(5, len(records)))
    weights = np.stack([np.bincount(row, minlength=len(records)) for row in draws]).astype(float)
    for n in (1, 4):
        many = metric.aggregate_many(f"bleu{n}", records, weights)
        one_by_one = [metric.aggregate(f"bleu{n}", [records[i] for i in row]) for row in draws]
        assert many == pytest.approx(one_by_one, rel=1e-12)


def rouge_reference(hyp: str, refs: list[str]) -> list[float]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = scorer.score_multi(refs, hyp)
    return [scores[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")]


WORDS = st.sampled_from(["effusions", "effusion", "pleural", "no", "mildly", "enlarged", "heart", "Heart", "is",
                         "x-ray", "4.5", "cm", "", "the", "running", "runs"])
TEXT = st.lists(WORDS, max_size=20).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(hyp=TEXT, refs=st.lists(TEXT, min_size=1, max_size=3))
def test_rouge_equals_rouge_score_exactly(hyp: str, refs: list[str]) -> None:
    assert rouge_module.pair_scores(hyp, refs) == rouge_reference(hyp, refs)


@settings(max_examples=300, deadline=None)
@given(a=st.lists(st.sampled_from("abcde"), max_size=30), b=st.lists(st.sampled_from("abcde"), max_size=30))
def test_bit_parallel_lcs_equals_the_dynamic_programme(a: list[str], b: list[str]) -> None:
    from rouge_score.rouge_scorer import _lcs_table

    expected = _lcs_table(a, b)[-1][-1] if a and b else 0
    assert lcs_length(a, b) == expected


def test_rouge_metric_records_and_mean_match_rouge_score_on_a_report_fixture() -> None:
    refs = ["No pneumothorax. Mild cardiomegaly with bilateral pleural effusions.",
            "The lungs are clear. There is no focal consolidation, pleural effusion or pneumothorax.",
            "Interval increase in the right pleural effusion with adjacent atelectasis."]
    hyps = ["Mild cardiomegaly. Small bilateral pleural effusions. No pneumothorax.", "",
            "Right pleural effusion with atelectasis, increased."]
    metric = Rouge(cache=False)
    records = metric.score([ScoreInput(str(i), h, (r,)) for i, (h, r) in enumerate(zip(hyps, refs))])
    expected = [rouge_reference(h, [r]) for h, r in zip(hyps, refs)]
    assert [[r[k] for k in ("rouge1", "rouge2", "rougeL")] for r in records] == expected
    assert metric.aggregate("rougeL", records) == pytest.approx(np.mean([e[2] for e in expected]))


def test_rescoring_reads_per_pair_values_from_the_disk_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    hyps, refs = random_corpus(11, 40)
    items = [ScoreInput(str(i), h + " cache-test", tuple(r)) for i, (h, r) in enumerate(zip(hyps, refs))]
    first_bleu, first_rouge = Bleu().score(items), Rouge().score(items)

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("recomputed a cached pair")

    monkeypatch.setattr(bleu_module, "sufficient_stats", fail)
    monkeypatch.setattr(rouge_module, "pair_scores", fail)
    assert Bleu().score(items) == first_bleu
    assert Rouge().score(items) == first_rouge
    changed = [ScoreInput("x", "a prediction never scored before", ("ref",))]
    with pytest.raises(AssertionError, match="recomputed"):
        Bleu().score(changed)


def test_metric_cache_can_be_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [ScoreInput("1", "mild cardiomegaly cache-off", ("mild cardiomegaly",))]
    Bleu().score(items)
    calls = []
    original = bleu_module.sufficient_stats
    monkeypatch.setattr(bleu_module, "sufficient_stats", lambda p, r: calls.append(p) or original(p, r))
    monkeypatch.setenv("RADBENCH_METRIC_CACHE", "off")
    Bleu().score(items)
    assert calls == ["mild cardiomegaly cache-off"]


def test_parallel_workers_give_the_serial_records() -> None:
    hyps, refs = random_corpus(3, 120)
    pairs = [(h, tuple(r)) for h, r in zip(hyps, refs)]
    serial = rouge_module._score_chunk(pairs)
    assert parallel.chunked_map(rouge_module._score_chunk, pairs, min_items=1, workers=2) == serial
    assert parallel.chunked_map(bleu_module._stats_chunk, pairs, min_items=1, workers=2) == \
        bleu_module._stats_chunk(pairs)
