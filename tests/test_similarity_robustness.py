"""Degenerate activations give finite similarities; invalid inputs raise clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_similarity_reference import correlated, mean_cca, scaled_covariance

from timm_transfusion import similarity
from timm_transfusion.similarity.cca import _whitening

CCA_METRICS = {
    "mean_cca": lambda x, y, **kw: similarity.mean_cca(x, y, **kw),
    "pwcca": lambda x, y, **kw: similarity.pwcca(x, y, **kw),
    "pwcca_google": lambda x, y, **kw: similarity.pwcca(x, y, convention="google-svcca", **kw),
    "svcca": lambda x, y, **kw: similarity.svcca(x, y, **kw),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _degenerate(kind: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = correlated(1000, 20, 30, seed=21)
    if kind == "dead":
        x[:, [2, 7]] = 0.0
    elif kind == "constant":
        x[:, 4] = 3.25
    elif kind == "rank_deficient":
        x[:, 10:] = x[:, :10] @ np.random.default_rng(0).normal(size=(10, 10))
    return x, y


@pytest.mark.parametrize("kind", ["dead", "constant", "rank_deficient"])
@pytest.mark.parametrize("epsilon", [0.0, 1e-6])
@pytest.mark.parametrize("metric", list(CCA_METRICS))
def test_degenerate_neurons_give_finite_similarity(kind, epsilon, metric):
    x, y = _degenerate(kind)
    for first, second in ((x, y), (y, x)):
        value = CCA_METRICS[metric](first, second, epsilon=epsilon)
        assert math.isfinite(value) and -1e-12 <= value <= 1 + 1e-12


@pytest.mark.parametrize("kind", ["dead", "constant", "rank_deficient"])
def test_degenerate_neurons_give_finite_cka(kind):
    x, y = _degenerate(kind)
    assert 0.0 <= similarity.linear_cka(x, y) <= 1.0
    assert math.isfinite(similarity.linear_cka(x, y, debiased=True))


def test_epsilon_removes_dead_neurons():
    x, y = _degenerate("dead")
    result = similarity.cca(x, y, epsilon=1e-6)
    assert result.x_kept.tolist() == [i not in (2, 7) for i in range(20)]


def test_rank_deficient_layer_against_itself():
    # 20 neurons of rank 10: ten unit correlations. PWCCA weights only directions with variance, so it is
    # 1; mean CCA counts the ten missing correlations as zeros, as google/svcca's full SVD does.
    x, _ = _degenerate("rank_deficient")
    result = similarity.cca(x, x)
    assert result.correlations.numel() == 10
    np.testing.assert_allclose(result.correlations.numpy(), 1.0, atol=1e-9)
    assert result.pwcca() == pytest.approx(1.0, abs=1e-9)
    assert result.mean_correlation() == pytest.approx(0.5, abs=1e-9)
    assert similarity.mean_cca(x, x) == pytest.approx(0.5, abs=1e-9)


@pytest.mark.parametrize("epsilon", [0.0, 1e-6])
def test_mean_cca_with_dead_neurons_matches_google_svcca(epsilon):
    # google/svcca keeps zero-variance neurons at epsilon = 0 (pinv gives them zero correlation) and drops
    # them for epsilon > 0; its full SVD then averages over min(kept x, kept y) correlations.
    def root(sigma):  # pinv, then its square root (round-off below zero clipped)
        values, vectors = np.linalg.eigh(np.linalg.pinv(sigma))
        return vectors @ np.diag(np.sqrt(values.clip(min=0))) @ vectors.T

    x, y = _degenerate("dead")
    sxx, sxy, syy, _, _ = scaled_covariance(x, y, epsilon)
    reference = np.linalg.svd(root(sxx) @ sxy @ root(syy), compute_uv=False).mean()
    for first, second in ((x, y), (y, x)):
        assert abs(similarity.mean_cca(first, second, epsilon) - reference) <= 1e-8
    assert similarity.cca(x, y, epsilon).mean_correlation() == pytest.approx(reference, abs=1e-8)
    assert (reference < 0.95 * mean_cca(x[:, [i not in (2, 7) for i in range(20)]], y)) == (epsilon == 0)


def test_redundant_neurons_on_the_other_side_change_nothing():
    # y's extra neurons are linear combinations of its first 15: the span, hence every canonical
    # correlation and x's variates, are those of the first 15 (the eigendecomposition route for y).
    x, y = correlated(1000, 12, 15, seed=22)
    redundant = np.concatenate([y, y @ np.random.default_rng(1).normal(size=(15, 10))], axis=1)
    np.testing.assert_allclose(
        similarity.cca(x, redundant).correlations.numpy(),
        similarity.cca(x, y).correlations.numpy(),
        atol=1e-9,
    )
    assert similarity.pwcca(x, redundant) == pytest.approx(similarity.pwcca(x, y), abs=1e-9)
    assert similarity.mean_cca(x, redundant) == pytest.approx(similarity.mean_cca(x, y), abs=1e-9)


@pytest.mark.parametrize("kind", ["well_conditioned", "singular"])
def test_whitening_route_follows_the_conditioning(kind):
    x, _ = correlated(1000, 12, 15, seed=23)
    if kind == "singular":
        x[:, 6:] = x[:, :6] @ np.random.default_rng(2).normal(size=(6, 6))
    sigma = torch.from_numpy(np.cov(x, rowvar=False))
    white = _whitening(sigma, 0.0)
    assert (white.basis is None) == (kind == "well_conditioned")  # Cholesky only when provably safe
    rank = 12 if kind == "well_conditioned" else 6
    np.testing.assert_allclose((white.transform.T @ sigma @ white.transform).numpy(), np.eye(rank), atol=1e-8)


def test_tensor_views_and_negative_strides_are_read_as_their_values():
    x, y = correlated(300, 5, 3, seed=24)
    reference = similarity.pwcca(x, y)
    negated = torch.complex(torch.zeros(300, 3, dtype=torch.float64), -torch.from_numpy(y)).conj().imag
    assert similarity.pwcca(x, negated) == pytest.approx(reference, abs=1e-12)  # a view with the negative bit
    assert similarity.pwcca(x[::-1], y[::-1]) == pytest.approx(reference, abs=1e-12)


def test_zero_features_raise():
    x, y = correlated(50, 5, 3, seed=25)
    with pytest.raises(similarity.ActivationShapeError, match="at least one feature"):
        similarity.pwcca(x[:, :0], y)


def test_all_dead_layer_gives_zero():
    x, y = correlated(500, 10, 12, seed=1)
    assert similarity.pwcca(np.zeros_like(x), y) == 0.0
    assert similarity.mean_cca(x, np.zeros_like(y)) == 0.0
    constant = np.full_like(x, 2.5)
    for metric in CCA_METRICS.values():  # the README's claim: no variance scores 0 on every metric
        assert metric(constant, y) == 0.0 and metric(x, np.zeros_like(y)) == 0.0
    for debiased in (False, True):  # 0/0 before: plain CKA 0.0 but debiased NaN
        assert similarity.linear_cka(constant, y, debiased=debiased) == 0.0
        assert similarity.linear_cka(x, np.zeros_like(y), debiased=debiased) == 0.0


def test_nested_lists_are_read_in_float64():
    # torch.as_tensor reads Python floats as float32: a 1e6 offset would then cost 1e-4 of accuracy
    x, y = correlated(300, 5, 7, seed=3)
    assert similarity.mean_cca((x + 1e6).tolist(), y.tolist()) == pytest.approx(
        similarity.mean_cca(x, y), abs=1e-9
    )


@pytest.mark.parametrize("epsilon", [float("nan"), float("inf"), -1e-3, "0.1"])
def test_invalid_epsilon_raises(epsilon):
    x, y = correlated(200, 5, 6, seed=2)
    for metric in CCA_METRICS.values():
        with pytest.raises(similarity.SimilarityOptionError, match="epsilon must be a finite number"):
            metric(x, y, epsilon=epsilon)


def test_too_few_datapoints_for_cka_raise():
    with pytest.raises(similarity.NotEnoughDataError, match="at least 2 datapoints; have 0"):
        similarity.MomentAccumulator().linear_cka()
    x, y = correlated(3, 5, 6, seed=2)
    with pytest.raises(similarity.NotEnoughDataError, match="debiased CKA needs at least 4"):
        similarity.linear_cka(x, y, debiased=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_activations_raise(bad):
    x, y = correlated(200, 5, 6, seed=2)
    y[17, 3] = bad
    with pytest.raises(similarity.NonFiniteActivationError, match="NaN or inf"):
        similarity.pwcca(x, y)


def test_mismatched_datapoints_raise():
    x, y = correlated(200, 5, 6, seed=2)
    with pytest.raises(similarity.ActivationShapeError, match="200 datapoints but y has 199"):
        similarity.mean_cca(x, y[:-1])


@pytest.mark.parametrize("metric", list(CCA_METRICS))
def test_fewer_datapoints_than_features_raise(metric):
    x, y = correlated(40, 50, 30, seed=3)
    with pytest.raises(similarity.NotEnoughDataError, match="40 datapoints for 50 features"):
        CCA_METRICS[metric](x, y)


def test_fewer_datapoints_than_features_may_warn_instead():
    x, y = correlated(40, 50, 30, seed=3)
    with pytest.warns(similarity.UnderdeterminedWarning, match="40 datapoints for 50 features"):
        value = similarity.pwcca(x, y, allow_underdetermined=True)
    assert math.isfinite(value)


def test_unknown_convention_names_the_choices():
    x, y = correlated(200, 5, 6, seed=2)
    with pytest.raises(similarity.SimilarityOptionError, match="'google'.*centered.*google-svcca"):
        similarity.pwcca(x, y, convention="google")


def test_wrong_rank_input_raises():
    with pytest.raises(similarity.ActivationShapeError, match=r"2-D \(datapoints, features\)"):
        similarity.linear_cka(np.zeros((4, 3, 2)), np.zeros((4, 3)))


def test_debiased_cka_needs_fourth_moments():
    x, y = correlated(200, 5, 6, seed=2)
    with pytest.raises(similarity.SimilarityOptionError, match="fourth_moments=True"):
        similarity.MomentAccumulator().update(x, y).linear_cka(debiased=True)
    with pytest.raises(similarity.SimilarityOptionError, match="with fourth moments and one without"):
        similarity.MomentAccumulator().update(x, y) + similarity.MomentAccumulator(
            fourth_moments=True
        ).update(x, y)


def test_overflowing_squares_raise():
    x, y = correlated(200, 5, 6, seed=2)
    x[3, 1] = 1e300
    with pytest.raises(similarity.NonFiniteActivationError, match="overflow"):
        similarity.mean_cca(x, y)
