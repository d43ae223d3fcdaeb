"""Baselines that need no weights: the floor every model must clear.

``majority`` answers with the most frequent reference of the exemplar split (per dataset subset and
question, falling back to the subset, then to all exemplars); ``retrieval`` returns the reference
of the nearest exemplar by image features and question text. Both learn only from the exemplar
(train) split, never from the test references, and both are deterministic.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from radbench.errors import SampleError, UsageError
from radbench.models.args import ModelArgs
from radbench.models.base import Adapter
from radbench.types import ImageRef, Request, stable_hash

THUMB = 16


def _most_common(values: Sequence[str]) -> str:
    counts = Counter(values)
    return min(counts, key=lambda v: (-counts[v], v))  # ties: alphabetical, so the result is stable


class MajorityAdapter(Adapter):
    """The most frequent exemplar answer for the same question (or subset, or task)."""

    name = "majority"
    # Answers from the exemplar split's statistics: no prompt, no decoding.
    supports_shots = False
    gen_kwargs_honoured: frozenset[str] = frozenset()
    version = "1"
    max_batch_size = 1024

    def __init__(self) -> None:
        self.by_question: dict[tuple[str, str], str] = {}
        self.by_subset: dict[str, str] = {}
        self.overall = ""
        self._fingerprint = stable_hash(["majority", []])

    def observe_exemplars(self, exemplars: Sequence[Request]) -> None:
        if not exemplars:
            raise UsageError("model 'majority' needs an exemplar (train) split, and this dataset has none")
        by_question: dict[tuple[str, str], list[str]] = {}
        by_subset: dict[str, list[str]] = {}
        for ex in exemplars:
            answer = ex.query.answer or ""
            by_question.setdefault((ex.subset, ex.query.text("")), []).append(answer)
            by_subset.setdefault(ex.subset, []).append(answer)
        self.by_question = {k: _most_common(v) for k, v in by_question.items()}
        self.by_subset = {k: _most_common(v) for k, v in by_subset.items()}
        self.overall = _most_common([ex.query.answer or "" for ex in exemplars])
        self._fingerprint = stable_hash(["majority", sorted((ex.sample_id, ex.query.answer) for ex in exemplars)])

    def generate(self, requests: Sequence[Request]) -> list[str]:
        return [
            self.by_question.get((req.subset, req.query.text(""))) or self.by_subset.get(req.subset) or self.overall
            for req in requests
        ]

    def fingerprint(self) -> str:
        return self._fingerprint


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def image_features(refs: Sequence[ImageRef]) -> np.ndarray:
    """A small, dimension-agnostic descriptor: per image, a 16x16 thumbnail and a 16-bin histogram.

    3D volumes are averaged over depth and channels, so a 2D query can still be compared with a 3D
    exemplar. Several images are averaged. Returns an L2-normalised vector.
    """
    from radbench import images

    feats = []
    for ref in refs:
        arr = images.load(ref)
        plane = arr.mean(axis=0)
        if plane.ndim == 3:
            plane = plane.mean(axis=-1)
        lo, hi = float(plane.min()), float(plane.max())
        norm = (plane - lo) / (hi - lo) if hi > lo else np.zeros_like(plane)
        rows = np.array_split(np.arange(norm.shape[0]), THUMB)
        cols = np.array_split(np.arange(norm.shape[1]), THUMB)
        thumb = np.array([[norm[np.ix_(r, c)].mean() for c in cols] for r in rows]).ravel()
        hist = np.histogram(norm, bins=16, range=(0, 1))[0] / norm.size
        feats.append(np.concatenate([thumb, hist]))
    if not feats:
        return np.zeros(THUMB * THUMB + 16)
    vec = np.mean(feats, axis=0)
    length = float(np.linalg.norm(vec))
    return vec / length if length else vec


@dataclass(frozen=True)
class RetrievalArgs(ModelArgs):
    """``image_weight``: the share of image similarity in the retrieval score (the rest is text)."""

    image_weight: float = 0.5


class RetrievalAdapter(Adapter):
    """Nearest exemplar by image similarity plus question-text similarity; returns its reference.

    Similarity is ``image_weight * cosine(image features) + (1 - image_weight) * cosine(tf-idf of the
    question and context)``, with exemplars restricted to the query's subset when it has any.
    """

    name = "retrieval"
    # Returns a stored reference: exemplars in the prompt and decoding settings change nothing.
    supports_shots = False
    gen_kwargs_honoured: frozenset[str] = frozenset()
    version = "1"
    max_batch_size = 64

    def __init__(self, image_weight: float = 0.5) -> None:
        if not 0.0 <= image_weight <= 1.0:
            raise UsageError(f"--model-args image_weight must be within [0, 1], got {image_weight}")
        self.image_weight = image_weight
        self.exemplars: list[Request] = []
        self._fingerprint = stable_hash(["retrieval", image_weight, []])

    @classmethod
    def from_args(cls, **model_args: str) -> Adapter:
        return cls(image_weight=RetrievalArgs.parse(cls.name, model_args).image_weight)

    def observe_exemplars(self, exemplars: Sequence[Request]) -> None:
        if not exemplars:
            raise UsageError("model 'retrieval' needs an exemplar (train) split, and this dataset has none")
        self.exemplars = sorted(exemplars, key=lambda ex: ex.sample_id)
        docs = [_tokens(ex.query.text("")) for ex in self.exemplars]
        df = Counter(t for doc in docs for t in set(doc))
        n = len(docs)
        self.idf = {t: math.log((1 + n) / (1 + c)) + 1 for t, c in df.items()}
        self.text_vecs = [self._tfidf(doc) for doc in docs]
        self.image_vecs: list[np.ndarray | None] = []
        for ex in self.exemplars:
            try:
                self.image_vecs.append(image_features(ex.query.images) if ex.query.images else None)
            except SampleError:
                self.image_vecs.append(None)  # an unreadable exemplar image is just never matched on pixels
        self._fingerprint = stable_hash(
            ["retrieval", self.image_weight, [(ex.sample_id, ex.query.answer) for ex in self.exemplars]]
        )

    def _tfidf(self, tokens: list[str]) -> dict[str, float]:
        counts = Counter(tokens)
        vec = {t: c * self.idf.get(t, 0.0) for t, c in counts.items()}
        length = math.sqrt(sum(v * v for v in vec.values()))
        return {t: v / length for t, v in vec.items()} if length else {}

    def generate(self, requests: Sequence[Request]) -> list[str]:
        out = []
        for req in requests:
            text_vec = self._tfidf(_tokens(req.query.text("")))
            image_vec = image_features(req.query.images) if req.query.images else None
            pool = [i for i, ex in enumerate(self.exemplars) if ex.subset == req.subset] or range(len(self.exemplars))
            best, best_score = None, -math.inf
            for i in pool:
                text_sim = sum(v * self.text_vecs[i].get(t, 0.0) for t, v in text_vec.items())
                ex_img = self.image_vecs[i]
                image_sim = float(image_vec @ ex_img) if image_vec is not None and ex_img is not None else 0.0
                score = self.image_weight * image_sim + (1 - self.image_weight) * text_sim
                if score > best_score:
                    best, best_score = i, score
            out.append((self.exemplars[best].query.answer or "") if best is not None else "")
        return out

    def fingerprint(self) -> str:
        return self._fingerprint
