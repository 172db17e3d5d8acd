"""The statistics of experiment reports on constructed cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from timm_transfusion.train.metrics.roc_auc import per_class_auc
from timm_transfusion.train.stats import (
    Interval,
    auc_replicates,
    bootstrap_auc,
    bootstrap_indices,
    paired_contrast,
    paired_difference,
    summarize_seeds,
    t_interval,
    verdict,
)


def _binary_task(n: int, separation: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    logits = rng.normal(size=n) + separation * labels
    p = 1 / (1 + np.exp(-logits))
    return np.stack([1 - p, p], axis=1), labels


def test_auc_replicates_match_scikit_learn_binary_multiclass_and_multilabel():
    scores, labels = _binary_task(200, 1.0, seed=0)
    scores[:20, 1] = 0.5  # ties count one half, as in roc_auc_score
    identity = np.arange(200)[None]
    assert auc_replicates(scores, labels, identity)[0] == pytest.approx(roc_auc_score(labels, scores[:, 1]))

    rng = np.random.default_rng(1)
    classes = rng.integers(0, 4, 150)
    probs = rng.dirichlet(np.ones(4), 150) + np.eye(4)[classes] * 0.3
    expected = np.nanmean(per_class_auc(np.eye(4, dtype=np.int64)[classes], probs))
    assert auc_replicates(probs, classes, np.arange(150)[None])[0] == pytest.approx(expected)

    multihot = rng.integers(0, 2, (150, 3))
    multihot[:, 2] = 1  # one label with a single class: left out of the mean
    expected = np.nanmean(per_class_auc(multihot, probs[:, :3]))
    got = auc_replicates(probs[:, :3], multihot, np.arange(150)[None], multilabel=True)[0]
    assert got == pytest.approx(expected)


def test_bootstrap_auc_interval_covers_the_estimate_and_narrows_with_more_images():
    small = bootstrap_auc(*_binary_task(100, 1.0, seed=2), resamples=400)
    large = bootstrap_auc(*_binary_task(2000, 1.0, seed=2), resamples=400)
    for interval in (small, large):
        assert interval.low < interval.estimate < interval.high
    assert (large.high - large.low) < 0.5 * (small.high - small.low)
    # Analytic check: with separation 1 the population AUC is Φ(1/√2) ≈ 0.760; 2000 images cover it.
    assert large.contains(0.5 * math.erfc(-1 / 2))


def test_seed_summary_keeps_every_seed_and_drops_undefined_ones_from_the_mean():
    summary = summarize_seeds({0: 0.8, 1: float("nan"), 2: 0.9, 3: None})
    assert summary.values == {0: 0.8, 1: None, 2: 0.9, 3: None}
    assert summary.n == 2
    assert summary.mean == pytest.approx(0.85) and summary.sd == pytest.approx(np.std([0.8, 0.9], ddof=1))
    assert summarize_seeds({0: 0.7}).sd is None and summarize_seeds({0: None}).mean is None


def test_paired_difference_detects_a_known_difference():
    rng = np.random.default_rng(3)
    seed_effect = rng.normal(0, 0.05, 5)  # shared by both inits: pairing cancels it
    a = {s: 0.80 + seed_effect[s] + 0.03 + rng.normal(0, 0.005) for s in range(5)}
    b = {s: 0.80 + seed_effect[s] + rng.normal(0, 0.005) for s in range(5)}
    contrast = paired_difference(a, b)
    assert contrast.interval.low > 0 and contrast.interval.contains(0.03)
    assert verdict(contrast.interval, "greater") == "supported"
    assert contrast.per_seed == pytest.approx({s: a[s] - b[s] for s in range(5)})


def test_paired_difference_of_identical_inits_contains_zero():
    rng = np.random.default_rng(4)
    hits = 0
    for _ in range(40):
        a = {s: rng.normal(0.8, 0.02) for s in range(4)}
        b = {s: rng.normal(0.8, 0.02) for s in range(4)}
        hits += paired_difference(a, b).interval.contains(0.0)
    assert hits >= 34  # 95 % coverage: fewer than 34 of 40 has probability < 1 %


def test_image_bootstrap_variance_widens_the_paired_interval():
    a, b = {0: 0.82, 1: 0.83, 2: 0.84}, {0: 0.80, 1: 0.80, 2: 0.81}
    seeds_only = paired_difference(a, b).interval
    both = paired_difference(
        a, b, image_replicates=np.random.default_rng(5).normal(0.027, 0.02, 500)
    ).interval
    assert both.estimate == seeds_only.estimate
    assert (both.high - both.low) > (seeds_only.high - seeds_only.low)
    assert "bootstrap over eval images" in both.method


def test_paired_contrast_uses_only_seeds_every_weighted_init_has():
    values = {
        "random": {0: 0.6, 1: 0.62, 2: None},
        "pretrained": {0: 0.8, 1: 0.82, 2: 0.81},
        "k2": {0: 0.75, 1: 0.76},
    }
    contrast = paired_contrast(values, {"k2": 1.0, "random": -0.5, "pretrained": -0.5})
    assert set(contrast.per_seed) == {0, 1}
    assert contrast.per_seed[0] == pytest.approx(0.75 - 0.7)
    assert paired_contrast({"a": {0: None}, "b": {0: 1.0}}, {"a": 1, "b": -1}) is None
    with pytest.raises(KeyError, match="no values for init 'c'"):
        paired_contrast(values, {"c": 1.0})


@pytest.mark.parametrize(
    ("low", "high", "claim", "expected"),
    [
        (0.01, 0.05, "greater", "supported"),
        (-0.05, -0.01, "greater", "contradicted"),
        (-0.01, 0.05, "greater", "inconclusive"),
        (-0.05, -0.01, "less", "supported"),
        (0.01, 0.05, "less", "contradicted"),
        (-0.01, 0.01, "equivalent", "supported"),
        (0.03, 0.06, "equivalent", "contradicted"),
        (-0.01, 0.04, "equivalent", "inconclusive"),
        (float("nan"), float("nan"), "greater", "inconclusive"),
    ],
)
def test_verdict_rule_on_constructed_intervals(low, high, claim, expected):
    interval = Interval(0.5 * (low + high), low, high)
    assert verdict(interval, claim, margin=0.02) == expected


def test_verdict_bound_shifts_the_rule_and_bad_claims_are_refused():
    assert verdict(Interval(0.6, 0.55, 0.65), "greater", bound=0.5) == "supported"
    assert verdict(Interval(0.6, 0.55, 0.65), "greater", bound=0.6) == "inconclusive"
    assert verdict(None, "less") == "inconclusive"
    with pytest.raises(ValueError, match="choose greater, less or equivalent"):
        verdict(Interval(0, 0, 0), "bigger")
    with pytest.raises(ValueError, match="needs a margin"):
        verdict(Interval(0, 0, 0), "equivalent")


def test_t_interval_and_bootstrap_indices_shapes():
    interval = t_interval([1.0, 2.0, 3.0])
    assert interval.estimate == 2.0 and interval.contains(2.0) and interval.high - interval.low > 2
    assert t_interval([1.0]) is None
    indices = bootstrap_indices(7, resamples=3, seed=1)
    assert indices.shape == (3, 7) and indices.max() < 7
    assert np.array_equal(indices, bootstrap_indices(7, resamples=3, seed=1))


def test_one_seed_without_image_resamples_has_no_interval_and_no_verdict():
    contrast = paired_difference({0: 0.9}, {0: 0.8})
    assert contrast.interval.estimate == pytest.approx(0.1)
    assert math.isnan(contrast.interval.low) and verdict(contrast.interval, "greater") == "inconclusive"
    with_images = paired_difference({0: 0.9}, {0: 0.8}, image_replicates=np.array([0.08, 0.1, 0.12, 0.11]))
    assert with_images.interval.low < 0.1 < with_images.interval.high


def test_a_single_seed_comparison_is_never_a_verdict():
    from timm_transfusion.train.findings import judge

    one_seed = paired_difference({0: 0.9}, {0: 0.8}, image_replicates=np.array([0.09, 0.1, 0.11, 0.1]))
    assert verdict(one_seed.interval, "greater") == "supported"  # the images alone would say so
    finding = judge("claim", "statistic", one_seed, "greater")
    assert finding.verdict == "inconclusive" and "1 seed" in finding.note
    two_seeds = paired_difference({0: 0.9, 1: 0.91}, {0: 0.8, 1: 0.8})
    assert judge("claim", "statistic", two_seeds, "greater").verdict == "supported"
