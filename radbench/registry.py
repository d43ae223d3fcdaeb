"""Lazy plugin registry for models, tasks, datasets and metrics.

Built-in entries are ``"module:attr"`` strings, imported only when used, so ``radbench --help`` and
``radbench list`` never import torch. Third-party packages add entries through the Python entry
point groups ``radbench.models``, ``radbench.tasks``, ``radbench.datasets`` and ``radbench.metrics``
(one line in their packaging metadata, no edit to radbench). A name of the form ``pkg.module:attr``
is also accepted wherever a registered name is, for code that is not packaged at all.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from radbench.errors import UsageError
from radbench.suggest import did_you_mean
from radbench.targets import load_target

KINDS = ("models", "tasks", "datasets", "metrics")

BUILTIN: dict[str, dict[str, str]] = {
    "models": {
        "radfm": "radbench.models.radfm:RadFMAdapter",
        "medflamingo": "radbench.models.flamingo:MedFlamingoAdapter",
        "openflamingo": "radbench.models.flamingo:OpenFlamingoAdapter",
        "llava-med": "radbench.models.llava_med:LlavaMedAdapter",
        "medvint": "radbench.models.medvint:MedVInTAdapter",
        "openai": "radbench.models.openai_api:OpenAIAdapter",
        "python": "radbench.models.python_callable:PythonCallableAdapter",
        "majority": "radbench.models.baselines:MajorityAdapter",
        "retrieval": "radbench.models.baselines:RetrievalAdapter",
    },
    "tasks": {
        "vqa": "radbench.tasks.vqa:VQATask",
        "report": "radbench.tasks.report:ReportTask",
        "rationale": "radbench.tasks.rationale:RationaleTask",
        "diagnosis": "radbench.tasks.diagnosis:DiagnosisTask",
    },
    "datasets": {
        "demo": "radbench.tasks.demo:DemoDataset",
        "radbench": "radbench.tasks.datasets.radfm:RadBench",
        "vqa-rad": "radbench.tasks.datasets.published:VQARad",
        "slake": "radbench.tasks.datasets.published:Slake",
        "slake-zh": "radbench.tasks.datasets.published:SlakeZh",
        "pmc-vqa": "radbench.tasks.datasets.published:PMCVQA",
        "pmc-casereport": "radbench.tasks.datasets.radfm:PMCCaseReport",
        "mimic-cxr": "radbench.tasks.datasets.published:MimicCXR",
        "iu-xray": "radbench.tasks.datasets.published:IUXray",
        "chestxray": "radbench.tasks.datasets.radfm:ChestXray",
        "pcxr": "radbench.tasks.datasets.radfm:PCXR",
        "mammo": "radbench.tasks.datasets.radfm:Mammo",
        "spinexr": "radbench.tasks.datasets.radfm:SpineXR",
        "radio-modality": "radbench.tasks.datasets.radfm:RadioModality",
    },
    "metrics": {
        "bleu": "radbench.metrics.bleu:Bleu",
        "rouge": "radbench.metrics.rouge:Rouge",
        "accuracy": "radbench.metrics.accuracy:Accuracy",
        "bertscore": "radbench.metrics.bertscore:BertScore",
        "umls": "radbench.metrics.umls:Umls",
        "rationale": "radbench.metrics.rationale:Rationale",
        "rationale_text": "radbench.metrics.rationale:RationaleText",
    },
}

# What the orchestration (cli, rescore, board) calls inside the plugin folders, by name, so that it
# imports none of them directly (tests/test_layers.py checks this) and loads each only when used.
SERVICES: dict[str, str] = {
    "leaderboard.build": "radbench.leaderboard.build:build",
    "leaderboard.html": "radbench.leaderboard.html:write",
    "validate": "radbench.tasks.validate:validate",
    "validate.render": "radbench.tasks.validate:render",
    "radfm.csv_rows": "radbench.tasks.datasets.radfm_files:read_csv_rows",
    "prompts.provenance": "radbench.tasks.templates:prompt_provenance",
}

# A metric object can produce several metric ids (one BLEU pass gives bleu1..bleu4); users name ids.
METRIC_IDS: dict[str, str] = {
    "bleu1": "bleu",
    "bleu2": "bleu",
    "bleu3": "bleu",
    "bleu4": "bleu",
    "rouge1": "rouge",
    "rouge2": "rouge",
    "rougeL": "rouge",
    "accuracy": "accuracy",
    "parse_failure_rate": "accuracy",
    "exact_match": "accuracy",
    "token_recall": "accuracy",
    "bertscore_f1": "bertscore",
    "bertscore_precision": "bertscore",
    "bertscore_recall": "bertscore",
    "umls_precision": "umls",
    "umls_recall": "umls",
    "umls_f1": "umls",
    "umls_neg_precision": "umls",
    "umls_neg_recall": "umls",
    "umls_neg_f1": "umls",
    "diagnosis_hit": "rationale",
    "diagnosis_hit_any": "rationale",
    "feature_recall": "rationale",
    "feature_precision": "rationale",
    "laterality_error_rate": "rationale",
    "negation_error_rate": "rationale",
    "rationale_article_bleu1": "rationale_text",
    "rationale_article_bleu2": "rationale_text",
    "rationale_article_bleu3": "rationale_text",
    "rationale_article_bleu4": "rationale_text",
    "rationale_article_rouge1": "rationale_text",
    "rationale_article_rouge2": "rationale_text",
    "rationale_article_rougeL": "rationale_text",
    "rationale_features_bleu1": "rationale_text",
    "rationale_features_bleu2": "rationale_text",
    "rationale_features_bleu3": "rationale_text",
    "rationale_features_bleu4": "rationale_text",
    "rationale_features_rouge1": "rationale_text",
    "rationale_features_rouge2": "rationale_text",
    "rationale_features_rougeL": "rationale_text",
    "rationale_split_fallback_rate": "rationale_text",
}


@dataclass(frozen=True)
class Entry:
    name: str
    target: str
    source: str  # "builtin" or the distribution that declared the entry point

    def load(self) -> Any:
        return load_target(self.target, f"{self.name!r}")


@lru_cache(maxsize=None)
def _plugin_entry_points(kind: str) -> tuple[Any, ...]:
    """Installed entry points of one group, scanned once per process (the scan reads every dist)."""
    from importlib.metadata import entry_points  # imported here: ``radbench --help`` never scans

    return tuple(entry_points(group=f"radbench.{kind}"))


def entries(kind: str) -> dict[str, Entry]:
    """All entries of one kind, built-ins first; a plugin cannot silently replace a built-in."""
    if kind not in KINDS:
        raise UsageError(f"unknown registry kind {kind!r}; choose from {', '.join(KINDS)}")
    found = {name: Entry(name, target, "builtin") for name, target in BUILTIN[kind].items()}
    for ep in _plugin_entry_points(kind):
        if ep.name in found and found[ep.name].target != ep.value:
            continue
        dist = ep.dist.name if ep.dist is not None else "unknown"
        found.setdefault(ep.name, Entry(ep.name, ep.value, dist))
    return found


def names(kind: str) -> list[str]:
    if kind == "metrics":
        return sorted(set(METRIC_IDS) | set(metric_plugin_ids()), key=_metric_order)
    return sorted(entries(kind))


def metric_plugin_ids() -> list[str]:
    """Metric ids added by plugins: each plugin metric's entry name is its id."""
    return [n for n, e in entries("metrics").items() if e.source != "builtin"]


def _metric_order(name: str) -> tuple[int, str]:
    ordered = list(METRIC_IDS)
    return (ordered.index(name), name) if name in ordered else (len(ordered), name)


def get(kind: str, name: str) -> Any:
    """Load the object registered under ``name``, or a ``module:attr`` reference given directly."""
    table = entries(kind)
    if name in table:
        return table[name].load()
    if kind == "datasets" and ("/" in name or os.sep in name or Path(name).expanduser().exists()):
        # A local folder (or its config file) holding a dataset without code: --dataset PATH.
        user_dataset = load_target("radbench.tasks.datasets.user:UserDataset", "dataset folder")
        return functools.partial(user_dataset, name)
    if ":" in name:
        return load_target(name, f"{kind[:-1]} {name!r}")
    singular = kind[:-1]
    known = names(kind)
    raise UsageError(f"unknown {singular} {name!r}; available: {', '.join(known)}{did_you_mean(name, known)}")


def service(name: str) -> Any:
    """The plugin function registered in :data:`SERVICES` under ``name``."""
    if name not in SERVICES:
        raise UsageError(f"unknown service {name!r}; available: {', '.join(sorted(SERVICES))}")
    return load_target(SERVICES[name], f"service {name!r}")


def metric_group(metric_id: str) -> str:
    """The registry entry that computes ``metric_id`` (``bleu4`` -> ``bleu``)."""
    if metric_id in METRIC_IDS:
        return METRIC_IDS[metric_id]
    if metric_id in entries("metrics"):
        return metric_id
    known = names("metrics")
    raise UsageError(f"unknown metric {metric_id!r}; available: {', '.join(known)}{did_you_mean(metric_id, known)}")
