"""The offline evaluate metrics agree with scikit-learn; steps_to_threshold from a known sequence."""

from __future__ import annotations

import evaluate
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, roc_auc_score

from timm_transfusion.train import steps_to_threshold
from timm_transfusion.train.convergence import best_auc, crossing_step, evaluation_steps, log_step_area
from timm_transfusion.train.metrics import METRIC_DIR, classification_metrics, load_metric


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_binary_auc_matches_sklearn(rng):
    labels = rng.integers(0, 2, 300)
    scores = np.clip(labels * 0.3 + rng.random(300) * 0.8, 0, 1).astype(np.float32)
    probs = np.stack([1 - scores, scores], 1)
    result = load_metric("roc_auc").compute(predictions=probs, references=labels)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_multiclass_auc_is_one_vs_rest_macro_as_sklearn(rng):
    labels = rng.integers(0, 5, 400)
    logits = rng.normal(size=(400, 5)) + np.eye(5)[labels] * 1.2
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    metric = load_metric("roc_auc")
    for chunk in np.array_split(np.arange(400), 7):  # streamed in batches, as in evaluation
        metric.add_batch(predictions=probs[chunk], references=labels[chunk])
    result = metric.compute()
    expected = roc_auc_score(labels, probs.astype(np.float64), multi_class="ovr", average="macro")
    assert result["roc_auc"] == pytest.approx(expected, abs=1e-9)
    assert len(result["roc_auc_per_class"]) == 5


def test_multilabel_gives_per_label_and_mean_auc(rng):
    labels = rng.integers(0, 2, (250, 3))
    scores = np.clip(labels * np.array([0.5, 0.1, 0.3]) + rng.random((250, 3)) * 0.7, 0, 1).astype(np.float32)
    result = load_metric("roc_auc", multilabel=True).compute(predictions=scores, references=labels)
    per_label = roc_auc_score(labels, scores, average=None)
    assert result["roc_auc_per_label"] == pytest.approx(per_label.tolist(), abs=1e-12)
    assert result["roc_auc"] == pytest.approx(per_label.mean(), abs=1e-12)
    assert result["roc_auc_per_label"][0] > result["roc_auc_per_label"][1]


def test_metrics_compose_with_evaluate_combine(rng):
    labels = rng.integers(0, 3, 90)
    probs = rng.dirichlet(np.ones(3), 90).astype(np.float32)
    combined = classification_metrics()
    assert [module.name for module in combined.evaluation_modules] == ["roc_auc", "accuracy"]
    result = combined.compute(predictions=probs, references=labels)
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1)))
    assert result["roc_auc"] == pytest.approx(
        roc_auc_score(labels, probs.astype(np.float64), multi_class="ovr")
    )


def test_metric_scripts_load_offline_with_evaluate_load(rng, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    labels = rng.integers(0, 2, (40, 2))
    scores = rng.random((40, 2)).astype(np.float32)
    metrics = evaluate.combine(
        [evaluate.load(str(METRIC_DIR / f"{name}.py"), "multilabel") for name in ("roc_auc", "accuracy")]
    )
    result = metrics.compute(predictions=scores, references=labels)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["accuracy"] == pytest.approx(accuracy_score(labels, scores >= 0.5))


def test_class_absent_from_references_is_left_out_of_the_mean():
    labels = np.array([0, 0, 1, 1, 0, 1])
    probs = np.array(
        [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.5, 0.2], [0.5, 0.4, 0.1], [0.1, 0.6, 0.3]]
    )
    result = load_metric("roc_auc").compute(predictions=probs.astype(np.float32), references=labels)
    assert np.isnan(result["roc_auc_per_class"][2])
    assert result["roc_auc"] == pytest.approx(np.mean(result["roc_auc_per_class"][:2]))


def test_steps_to_threshold_from_a_known_sequence():
    records = [
        {"step": 100, "auc": 0.62},
        {"step": 200, "auc": 0.71},
        {"step": 300, "auc": 0.69},
        {"step": 400, "auc": 0.75},
        {"step": 500, "auc": 0.80},
    ]
    assert steps_to_threshold(records, [0.6, 0.7, 0.75, 0.8, 0.9]) == {
        "0.6": 100,
        "0.7": 200,
        "0.75": 400,
        "0.8": 500,
        "0.9": None,
    }
    assert steps_to_threshold([], [0.7]) == {"0.7": None}


def test_evaluation_steps_are_log_spaced_early_plus_a_regular_grid():
    assert evaluation_steps(300, every=100) == [10, 20, 40, 80, 100, 160, 200, 300]
    assert evaluation_steps(50, every=25, log_start=0) == [25, 50]
    assert evaluation_steps(7, every=100) == [7]


def test_crossing_step_interpolates_between_the_evaluations_around_the_crossing():
    steps, aucs = [10, 20, 40, 80], [0.55, 0.6, 0.8, 0.85]
    assert crossing_step(steps, aucs, 0.7) == pytest.approx(30.0)  # halfway from 0.6 @20 to 0.8 @40
    assert crossing_step(steps, aucs, 0.8) == pytest.approx(40.0)
    assert crossing_step(steps, aucs, 0.5) == 10.0  # already above at the first evaluation
    assert crossing_step(steps, aucs, 0.9) is None
    assert crossing_step(steps, [0.55, None, 0.8, 0.85], 0.7) == pytest.approx(10 + 0.6 * 30)


def test_log_step_area_is_the_mean_auc_per_doubling():
    assert log_step_area([10, 20, 40], [0.6, 0.6, 0.6]) == pytest.approx(0.6)
    # Two doublings with trapezoids (0.5 + 0.7) / 2 and (0.7 + 0.9) / 2, each of width log 2.
    assert log_step_area([10, 20, 40], [0.5, 0.7, 0.9]) == pytest.approx(0.7)
    # An init that is better early has the larger area even with the same final AUC.
    assert log_step_area([10, 100, 1000], [0.8, 0.85, 0.9]) > log_step_area([10, 100, 1000], [0.5, 0.6, 0.9])
    assert log_step_area([10, 20], [0.6, None]) is None
    with pytest.raises(ValueError, match="increasing"):
        log_step_area([20, 10], [0.5, 0.6])


def test_best_auc_skips_undefined_evaluations_wherever_they_sit():
    """Issue 10: ``max`` over AUCs with a NaN depended on where the NaN sat."""
    nan = float("nan")
    for aucs in ([nan, 0.7, 0.8], [0.7, nan, 0.8], [0.8, 0.7, nan], [0.7, None, 0.8]):
        assert best_auc([{"auc": a} for a in aucs]) == 0.8
    assert best_auc([{"auc": nan}]) is None
