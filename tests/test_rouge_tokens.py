"""ROUGE's fast tokeniser against rouge-score's own, on a large varied corpus, and its light nltk import.

radbench tokenises with one regular expression and a per-word memo of nltk's Porter stemmer, imported
without the rest of nltk. These tests check that the tokens, and so the scores, are rouge-score's bit
for bit on text that exercises the stemmer's rules and the tokeniser's edge cases.
"""

from __future__ import annotations

import random
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from radbench.metrics import rouge

SUFFIXES = ["", "s", "es", "ies", "sses", "ed", "ing", "ational", "tional", "enci", "anci", "izer", "bli", "alli",
            "entli", "eli", "ousli", "ization", "ation", "ator", "alism", "iveness", "fulness", "ousness", "aliti",
            "iviti", "biliti", "icate", "ative", "alize", "iciti", "ical", "ful", "ness", "al", "ance", "ence", "er",
            "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou", "ism", "ate", "iti", "ous", "ive", "ize",
            "e", "ll", "y", "ly", "eed", "ated", "bled", "ized", "logi", "fulli", "lessli"]
ODD = ["İstanbul", "straße", "naïve", "café", "Ωmega", "x-ray", "T2-weighted", "3.5cm", "C5-C6", "re-demonstrated",
       "dying", "lying", "skies", "news", "innings", "sky", "proceed", "exceed", "succeed", "generously", "ⅷ", "１２",
       "don't", "e.g.", "a/b", "\t\n", "___", "ab", "abc", "abcd", "y", "yy", "yyyy", "aaaaaaaaaaaaaaa"]


def _corpus(n_lines: int, seed: int) -> list[str]:
    """Lines of the standard library's own sources (English prose and code) plus synthetic words."""
    rng = random.Random(seed)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    lines: list[str] = []
    for name in ("argparse.py", "textwrap.py", "difflib.py", "email/message.py", "unittest/case.py", "pydoc.py"):
        lines += [line for line in (stdlib / name).read_text(encoding="utf-8").splitlines() if line.strip()]
    rng.shuffle(lines)
    lines = lines[: n_lines // 2]
    stems = sorted({w.strip(".,:;()'\"`").lower() for line in lines for w in line.split()} - {""})
    for _ in range(n_lines - len(lines)):
        words = [rng.choice(stems) + rng.choice(SUFFIXES) if rng.random() < 0.8 else rng.choice(ODD)
                 for _ in range(rng.randint(0, 25))]
        words = [w.upper() if rng.random() < 0.1 else w.capitalize() if rng.random() < 0.1 else w for w in words]
        lines.append(rng.choice([" ", ", ", ". ", "; ", " - "]).join(words))
    return lines


@pytest.mark.slow
def test_tokens_equal_rouge_score_tokenizer_on_a_large_varied_corpus() -> None:
    from rouge_score import tokenizers

    theirs = tokenizers.DefaultTokenizer(use_stemmer=True)
    corpus = _corpus(6000, seed=0)
    distinct = {w for line in corpus for w in line.lower().split()}
    assert len(distinct) > 5000  # the stemmer sees thousands of distinct words, not a handful
    for line in corpus:
        assert list(rouge.tokens(line)) == theirs.tokenize(line), line


@pytest.mark.slow
def test_scores_equal_rouge_score_bit_for_bit_on_corpus_pairs() -> None:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    corpus = _corpus(2000, seed=1)
    rng = random.Random(2)
    for _ in range(1500):
        prediction, reference = rng.choice(corpus), rng.choice(corpus)
        expected = scorer.score(reference, prediction)
        got = rouge.pair_scores(prediction, [reference])
        assert got == [expected[k].fmeasure for k in ("rouge1", "rouge2", "rougeL")], (prediction, reference)


def test_stemming_does_not_import_nltk_whole_and_nltk_still_imports_normally() -> None:
    code = (
        "import sys\n"
        "from radbench.metrics import rouge\n"
        "assert rouge.tokens('Pleural effusions are decreasing') == ('pleural', 'effus', 'are', 'decreas')\n"
        "heavy = sorted(m for m in ('nltk', 'scipy', 'sklearn', 'pandas') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
        "import nltk\n"
        "from nltk.stem import porter\n"
        "assert callable(nltk.download) and porter.PorterStemmer().stem('effusions') == 'effus'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("text", ["", "   ", "?!", "ÄÖÜ", "a", "THE IMPRESSION: NORMAL."])
def test_edge_texts_tokenise_like_rouge_score(text: str) -> None:
    from rouge_score import tokenizers

    assert list(rouge.tokens(text)) == tokenizers.DefaultTokenizer(use_stemmer=True).tokenize(text)
