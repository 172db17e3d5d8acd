"""The project's metrics as ``evaluate`` modules that load offline (no Hub script fetch)."""

from __future__ import annotations

from pathlib import Path

import evaluate

from .accuracy import Accuracy
from .errors import MetricConfigError
from .roc_auc import RocAuc

METRICS = {"roc_auc": RocAuc, "accuracy": Accuracy}
METRIC_DIR = Path(__file__).parent


def load_metric(name: str, *, multilabel: bool = False) -> evaluate.EvaluationModule:
    """An in-memory instance of one of ``METRICS`` for a multiclass (binary included) or multilabel task."""
    if name not in METRICS:
        raise MetricConfigError(f"unknown metric {name!r}; choose one of {sorted(METRICS)}")
    return METRICS[name](config_name="multilabel" if multilabel else "multiclass", keep_in_memory=True)


def classification_metrics(*, multilabel: bool = False) -> evaluate.CombinedEvaluations:
    """``evaluate.combine`` of roc_auc and accuracy; feed it scores (N, C) and references."""
    return evaluate.combine([load_metric(name, multilabel=multilabel) for name in METRICS])


__all__ = ["METRICS", "METRIC_DIR", "Accuracy", "RocAuc", "classification_metrics", "load_metric"]
