"""The reference side of the whole-process figures: the metrics radbench equals, called directly.

A user without radbench would write this script: pycocoevalcap's ``Bleu(4)`` (the convention
radbench's BLEU equals), rouge-score's ``RougeScorer`` with the Porter stemmer, and for the full
report suite ``bert_score.BERTScorer`` on the same MiniLM encoder and layer and QuickUMLS on the
same HPO index with radbench's default matching settings. No bootstrap, no files written: only the
numbers. ``bench_process.py`` runs it in a fresh process beside ``radbench score``.

Run: ``python benchmarks/direct_metrics.py PREDICTIONS.jsonl [--suite] [--umls-index DIR]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("predictions", type=Path)
    parser.add_argument("--suite", action="store_true", help="also BERTScore and UMLS concept F1")
    parser.add_argument("--umls-index", help="QuickUMLS index directory (the HPO index radbench built)")
    parser.add_argument("--encoder", help="BERTScore encoder directory")
    args = parser.parse_args()

    from pycocoevalcap.bleu.bleu import Bleu
    from rouge_score import rouge_scorer

    rows = [json.loads(line) for line in args.predictions.read_text(encoding="utf-8").splitlines() if line.strip()]
    hyps = [r["prediction"] for r in rows]
    refs = [r["reference"] for r in rows]
    bleu, _ = Bleu(4).compute_score({i: [r] for i, r in enumerate(refs)}, {i: [h] for i, h in enumerate(hyps)},
                                    verbose=0)
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = [scorer.score(r, h) for r, h in zip(refs, hyps)]
    out = {f"bleu{n + 1}": b for n, b in enumerate(bleu)}
    out.update({k: sum(s[k].fmeasure for s in scores) / len(scores) for k in ("rouge1", "rouge2", "rougeL")})
    if args.suite:
        import bert_score

        theirs = bert_score.BERTScorer(model_type=args.encoder, num_layers=6)
        # bert_score 0.3.13 fails on an empty candidate under transformers 5; score those as 0 here.
        keep = [i for i, h in enumerate(hyps) if h.strip()]
        _, _, f1 = theirs.score([hyps[i] for i in keep], [refs[i] for i in keep])
        out["bertscore_f1"] = float(f1.sum()) / len(hyps)
        out["umls_f1"] = umls_f1(hyps, refs, args.umls_index)
    print(json.dumps(out))


def umls_f1(hyps: list[str], refs: list[str], index: str) -> float:
    """Mean concept F1 with QuickUMLS on a blank spaCy tokenizer, as a spaCy component would run it."""
    import types

    import spacy
    from quickumls import core

    # Offline, nltk has no stopword corpus and QuickUMLS would download one: give it the same list
    # radbench ships (nltk's English list), as radbench does.
    from radbench.metrics.umls.stopwords import ENGLISH

    words = sorted(ENGLISH)
    core.nltk = types.SimpleNamespace(corpus=types.SimpleNamespace(
        stopwords=types.SimpleNamespace(words=lambda fileids=None: words)), download=None)
    matcher = core.QuickUMLS(index, threshold=0.7, similarity_name="jaccard", window=5, min_match_length=3,
                             overlapping_criteria="score", accepted_semtypes=None, spacy_component=True)
    nlp = spacy.blank("en")

    def concepts(text: str) -> set[str]:
        return {group[0]["cui"] for group in matcher._match(nlp(text), best_match=True, ignore_syntax=False)}

    total = 0.0
    for h, r in zip(hyps, refs):
        p, q = concepts(h), concepts(r)
        both = len(p & q)
        if not p and not q:
            total += 1.0
        elif p and q and both:
            total += 2 * both / (len(p) + len(q))
    return total / len(hyps)


if __name__ == "__main__":
    sys.exit(main())
