"""Accuracy from scores as an offline ``evaluate`` module, so it composes with ``roc_auc`` in ``evaluate.combine``.

``predictions`` are scores (N, C): the predicted class is the argmax (``multiclass``) or each label is predicted
where its probability is >= 0.5 (``multilabel``, exact-match accuracy as scikit-learn's ``accuracy_score``).
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score

# absolute: evaluate.load() runs this file as a standalone script, where relative imports fail
from timm_transfusion.train.metrics.errors import MetricConfigError

# Same inputs as roc_auc, so both compose in evaluate.combine; repeated here because evaluate.load(path)
# imports each module file on its own.
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


class Accuracy(evaluate.Metric):
    """Fraction of images whose predicted class (or full label set) equals the reference."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _FEATURES:
            raise MetricConfigError(
                f"unknown accuracy config {self.config_name!r}; choose one of {sorted(_FEATURES)}"
            )
        return evaluate.MetricInfo(
            description=__doc__,
            citation="",
            inputs_description="predictions: (N, C) scores; references: (N,) class ids or (N, K) multi-hot",
            features=_FEATURES[self.config_name],
        )

    def _compute(self, predictions: list, references: list) -> dict:
        scores = np.asarray(predictions, dtype=np.float64)
        refs = np.asarray(references, dtype=np.int64)
        predicted = (scores >= 0.5).astype(np.int64) if self.config_name == "multilabel" else scores.argmax(1)
        return {"accuracy": float(accuracy_score(refs, predicted))}
