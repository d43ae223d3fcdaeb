"""Metrics (installed as ``radbench.metrics``): per-sample values, one aggregation path, recorded configs."""
