"""ROC AUC as an offline ``evaluate`` module (scikit-learn under the hood).

Configs: ``multiclass`` (binary is the 2-class case) and ``multilabel``. ``predictions`` are scores, one row per
image: (N, C) class probabilities or (N, K) per-label probabilities; ``references`` are (N,) ints or (N, K)
multi-hot. Binary: the AUC of the positive-class column. Multiclass: one-vs-rest, macro-averaged. Multilabel:
per-label AUC and their mean. Classes / labels whose references hold a single value have no AUC; they are
left out of the mean (and reported as NaN per class).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import roc_auc_score

# absolute: evaluate.load() runs this file as a standalone script, where relative imports fail
from timm_transfusion.train.metrics.errors import MetricConfigError

_FEATURES = {
    "multiclass": datasets.Features(
        {"predictions": datasets.List(datasets.Value("float32")), "references": datasets.Value("int64")}
    ),
    "multilabel": datasets.Features(
        {
            "predictions": datasets.List(datasets.Value("float32")),
            "references": datasets.List(datasets.Value("int64")),
        }
    ),
}


def per_class_auc(onehot: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One-vs-rest AUC per column; ``onehot``/``scores`` (N, C); NaN where a column has one class only."""
    aucs = np.full(onehot.shape[1], np.nan)
    for c in range(onehot.shape[1]):
        if 0 < onehot[:, c].sum() < len(onehot):
            aucs[c] = roc_auc_score(onehot[:, c], scores[:, c])
    return aucs


class RocAuc(evaluate.Metric):
    """Area under the ROC curve for binary, multiclass (OvR macro) and multilabel (per label + mean) tasks."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _FEATURES:
            raise MetricConfigError(
                f"unknown roc_auc config {self.config_name!r}; choose one of {sorted(_FEATURES)}"
            )
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: (N, C) scores; references: (N,) class ids or (N, K) multi-hot",
            features=_FEATURES[self.config_name],
            reference_urls=[
                "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.roc_auc_score.html"
            ],
        )

    def _compute(self, predictions: list, references: list) -> dict:
        scores = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references, dtype=np.int64)
        if self.config_name == "multilabel":
            aucs = per_class_auc(refs, scores)
            return {"roc_auc": float(np.nanmean(aucs)), "roc_auc_per_label": aucs.tolist()}
        if scores.shape[1] == 2:
            return {"roc_auc": float(roc_auc_score(refs, scores[:, 1]))}
        aucs = per_class_auc(np.eye(scores.shape[1], dtype=np.int64)[refs], scores)
        return {"roc_auc": float(np.nanmean(aucs)), "roc_auc_per_class": aucs.tolist()}
