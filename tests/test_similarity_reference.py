"""timm_transfusion.similarity against plain implementations written here from the definitions.

Activations are (datapoints, features). Full-data covariance with ddof=1, each block scaled by its largest
absolute entry, neurons with scaled variance below epsilon dropped, epsilon·I added before inverting, CCA
by SVD of the whitened cross-covariance, PWCCA by a QR over the datapoints of the smaller side's variates.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from timm_transfusion import similarity


def scaled_covariance(x: np.ndarray, y: np.ndarray, epsilon: float):
    dx = x.shape[1]
    joint = np.cov(np.concatenate([x, y], axis=1), rowvar=False, ddof=1)
    sxx, sxy, syy = joint[:dx, :dx], joint[:dx, dx:], joint[dx:, dx:]
    ax, ay = np.abs(sxx).max(), np.abs(syy).max()
    sxx, syy, sxy = sxx / ax, syy / ay, sxy / np.sqrt(ax * ay)
    keep_x, keep_y = np.diag(sxx) >= epsilon, np.diag(syy) >= epsilon
    sxx = sxx[np.ix_(keep_x, keep_x)] + epsilon * np.eye(keep_x.sum())
    syy = syy[np.ix_(keep_y, keep_y)] + epsilon * np.eye(keep_y.sum())
    return sxx, sxy[np.ix_(keep_x, keep_y)], syy, keep_x, keep_y


def inverse_sqrt_eigh(sigma: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(sigma)
    return vectors @ np.diag(values**-0.5) @ vectors.T


def inverse_sqrt_pinv(sigma: np.ndarray) -> np.ndarray:
    """The reference's route: pseudo-inverse, then its square root via eigh."""
    values, vectors = np.linalg.eigh(np.linalg.pinv(sigma))
    return vectors @ np.diag(np.sqrt(values)) @ vectors.T


def canonical(x, y, epsilon=0.0, google=False):
    """-> correlations (r,), directions of x (kx, ·), directions of y (ky, ·), kept masks."""
    sxx, sxy, syy, keep_x, keep_y = scaled_covariance(x, y, epsilon)
    root = inverse_sqrt_pinv if google else inverse_sqrt_eigh
    u, rho, vt = np.linalg.svd(root(sxx) @ (sxy @ root(syy)), full_matrices=google)
    return rho, u, vt.T, keep_x, keep_y


def mean_cca(x, y, epsilon=0.0):
    return canonical(x, y, epsilon)[0].mean()


def pwcca(x, y, epsilon=0.0, google=False):
    rho, u, v, keep_x, keep_y = canonical(x, y, epsilon, google)
    acts, dirs = (x[:, keep_x], u) if keep_x.sum() <= keep_y.sum() else (y[:, keep_y], v)
    dirs = dirs[:, : rho.size]
    mean = acts.mean(0)
    variates = (acts - mean) @ dirs
    if google:
        variates = variates + mean[: rho.size]
    basis, _ = np.linalg.qr(variates)
    weights = np.abs(basis.T @ acts).sum(1)
    weights /= weights.sum()
    return float(weights @ rho)


def svcca(x, y, dims):
    """Project each centred side on its top ``dims`` right-singular directions, then mean CCA."""
    reduced = []
    for acts in (x, y):
        centred = acts - acts.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        reduced.append(centred @ vt[:dims].T)
    return mean_cca(*reduced)


def linear_cka(x, y):
    x, y = x - x.mean(0), y - y.mean(0)
    return np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y))


def debiased_linear_cka(x, y):
    """Unbiased HSIC (Song et al. 2012) on the n×n linear Gram matrices."""

    def hsic(k, g):
        n = k.shape[0]
        k, g = k.copy(), g.copy()
        np.fill_diagonal(k, 0)
        np.fill_diagonal(g, 0)
        ones = np.ones(n)
        return (
            np.trace(k @ g)
            + (ones @ k @ ones) * (ones @ g @ ones) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * ones @ k @ g @ ones
        ) / (n * (n - 3))

    kx, ky = x @ x.T, y @ y.T
    return hsic(kx, ky) / np.sqrt(hsic(kx, kx) * hsic(ky, ky))


def correlated(n: int, dx: int, dy: int, seed: int = 0, shared: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Post-ReLU-like activations with a shared latent, non-zero means and distinct scales."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(n, shared))
    x = latent @ rng.normal(size=(shared, dx)) + rng.normal(size=(n, dx)) + rng.normal(size=dx)
    y = latent @ rng.normal(size=(shared, dy)) + 1.5 * rng.normal(size=(n, dy)) + rng.normal(size=dy)
    return np.maximum(x, 0) * rng.uniform(0.5, 3, size=dx), np.maximum(y, 0) * rng.uniform(0.5, 3, size=dy)


# Agreement of timm_transfusion.similarity with the plain implementations above.

SHAPES = {"d1<d2": (20, 32), "d1>d2": (32, 20), "d1=d2": (24, 24)}
TOLERANCE = 1e-8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(params=list(SHAPES), scope="module")
def activations(request):
    dx, dy = SHAPES[request.param]
    return correlated(1500, dx, dy, seed=dx * 100 + dy)


@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
def test_mean_cca_matches_plain_definition(activations, epsilon):
    x, y = activations
    assert abs(similarity.mean_cca(x, y, epsilon) - mean_cca(x, y, epsilon)) <= TOLERANCE


@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
def test_centered_pwcca_matches_qr_over_datapoints(activations, epsilon):
    x, y = activations
    assert abs(similarity.pwcca(x, y, epsilon) - pwcca(x, y, epsilon)) <= TOLERANCE


@pytest.mark.parametrize("epsilon", [0.0, 1e-3])
def test_google_pwcca_matches_mean_added_back_definition(activations, epsilon):
    x, y = activations
    ours = similarity.pwcca(x, y, epsilon, convention="google-svcca")
    assert abs(ours - pwcca(x, y, epsilon, google=True)) <= TOLERANCE


def test_conventions_differ_on_activations_with_large_means(activations):
    x, y = activations
    assert abs(similarity.pwcca(x, y) - similarity.pwcca(x, y, convention="google-svcca")) > 1e-4


def test_epsilon_drops_low_variance_neurons_like_the_reference():
    x, y = correlated(1500, 20, 30, seed=3)
    x[:, :3] *= 1e-3  # scaled variance ~1e-6 of the largest: below epsilon, so dropped
    result = similarity.cca(x, y, epsilon=1e-4)
    assert result.x_kept.sum().item() == 17 and result.y_kept.all()
    assert abs(result.mean_correlation() - mean_cca(x, y, 1e-4)) <= TOLERANCE
    assert abs(result.pwcca() - pwcca(x, y, 1e-4)) <= TOLERANCE


def test_correlations_match_plain_definition(activations):
    x, y = activations
    ours = similarity.cca(x, y).correlations.numpy()
    np.testing.assert_allclose(ours, canonical(x, y)[0], atol=TOLERANCE, rtol=0)


def _assert_same_up_to_signs(ours: np.ndarray, reference: np.ndarray, signs: np.ndarray) -> None:
    np.testing.assert_allclose(ours * signs, reference, atol=1e-7, rtol=0)


@pytest.mark.parametrize("convention", ["centered", "google-svcca"])
def test_directions_of_both_sides_match_the_singular_vectors(activations, convention):
    # The weighted side comes from the eigendecomposition, the other one from a companion computed on
    # demand; both must be the reference's singular vectors, with one sign per pair.
    x, y = activations
    rho, u, v, _, _ = canonical(x, y)
    result = similarity.cca(x, y, convention=convention)
    rank = rho.size
    ours_x, ours_y = result.x_directions.numpy()[:, :rank], result.y_directions.numpy()[:, :rank]
    signs = np.sign((ours_x * u[:, :rank]).sum(0))
    _assert_same_up_to_signs(ours_x, u[:, :rank], signs)
    _assert_same_up_to_signs(ours_y, v[:, :rank], signs)


def test_repeated_correlations_keep_their_pairs():
    # x against a rotation of itself: every correlation is 1, so the singular vectors are any basis; the
    # companion's y side must still pair with the x side (unit correlation for each variate pair).
    x, _ = correlated(1500, 20, 20, seed=9)
    y = x @ np.linalg.qr(np.random.default_rng(10).normal(size=(20, 20)))[0]
    result = similarity.cca(x, y)
    u = (x - x.mean(0)) @ result.x_coefficients.numpy()
    v = (y - y.mean(0)) @ result.y_coefficients.numpy()
    np.testing.assert_allclose((u * v).sum(0) / np.sqrt((u * u).sum(0) * (v * v).sum(0)), 1.0, atol=1e-9)


def test_ill_conditioned_layer_matches_the_reference():
    # Condition number ~1e7 for the side that is whitened by Cholesky when it is safe, by eigh otherwise.
    x, y = correlated(1500, 20, 30, seed=11)
    y[:, :5] = y[:, 5:10] + 1e-3 * np.random.default_rng(12).normal(size=(1500, 5))
    assert abs(similarity.mean_cca(x, y) - mean_cca(x, y)) <= TOLERANCE
    assert abs(similarity.pwcca(x, y) - pwcca(x, y)) <= TOLERANCE
    np.testing.assert_allclose(similarity.cca(x, y).correlations.numpy(), canonical(x, y)[0], atol=TOLERANCE)


def _with_correlations(rho: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x (n, k), y (n, k) whose sample canonical correlations are exactly ``rho``, mixed and scaled."""
    k = rho.size
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(n, 2 * k))
    basis = np.linalg.qr(basis - basis.mean(0))[0]
    x = basis[:, :k] * rng.uniform(1, 3, k) @ np.linalg.qr(rng.normal(size=(k, k)))[0]
    y = basis[:, :k] * rho + basis[:, k:] * np.sqrt(1 - rho**2)
    return x, y @ np.linalg.qr(rng.normal(size=(k, k)))[0] + 5


def pwcca_by_polar_factors(x, y):
    """PWCCA without covariances: Xc(XcᵀXc)^-1/2 is the polar factor of Xc, so the SVD of the two polar
    factors' product gives ρ and the directions in the symmetric whitened space, with no squared
    condition numbers."""

    def polar(a):
        q, r = np.linalg.qr(a - a.mean(0))
        u, _, vt = np.linalg.svd(r)
        return q @ u @ vt

    directions, rho, _ = np.linalg.svd(polar(x).T @ polar(y))
    basis, _ = np.linalg.qr((x - x.mean(0)) @ directions)
    weights = np.abs(basis.T @ x).sum(1)
    return float(weights @ rho / weights.sum())


def test_pwcca_resolves_tiny_distinct_correlations():
    # Correlations 1e-5 … 1e-7 are poorly separated through ρ² (eigh of KKᵀ was up to 5e-6 off here), so
    # the solver takes the SVD of K for them (about 1e-11 off).
    rho = np.r_[0.9, 0.5, np.logspace(-5, -7, 8)]
    x, y = _with_correlations(rho)
    for first, second in ((x, y), (y, x)):
        assert abs(similarity.pwcca(first, second) - pwcca_by_polar_factors(first, second)) <= 1e-9
    np.testing.assert_allclose(similarity.cca(x, y).correlations.numpy(), rho, atol=1e-12)


def test_companions_of_a_lower_rank_side_with_zero_correlations():
    # y: 12 neurons of rank 3, correlations (0.6, 0, 0) with x. Its directions must still be orthonormal
    # and its canonical variates of unit variance.
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(1500, 60))
    basis = np.linalg.qr(basis - basis.mean(0))[0] * np.sqrt(1499)
    x = basis[:, :6] @ rng.normal(size=(6, 6))
    y = np.c_[0.6 * basis[:, 0] + 0.8 * basis[:, 45], basis[:, 40], basis[:, 41]] @ rng.normal(size=(3, 12))
    result = similarity.cca(x, y)
    np.testing.assert_allclose(result.correlations.numpy(), [0.6, 0, 0, 0, 0, 0], atol=1e-10)
    directions = result.y_directions.numpy()
    assert directions.shape == (12, 3)
    np.testing.assert_allclose(directions.T @ directions, np.eye(3), atol=1e-9)
    scale_y = np.sqrt(np.abs(np.cov(y, rowvar=False)).max())
    variates = (y - y.mean(0)) / scale_y @ result.y_coefficients.numpy()
    np.testing.assert_allclose(variates.var(0, ddof=1), 1.0, atol=1e-8)


def test_pwcca_weights_the_variates_a_lower_rank_other_side_cannot_match():
    # x (6 neurons) is weighted; y has 9 neurons of rank 5, so one of x's canonical variates has no partner:
    # its correlation is 0 and it keeps its PWCCA weight. The reference runs CCA against y's 5-dim span
    # (same correlations and x-variates) with x's full set of 6 singular vectors; the unmatched one is
    # unique up to sign, so the value is well defined.
    rng = np.random.default_rng(3)
    x, y = correlated(1500, 6, 5, seed=31)
    y = y @ rng.normal(size=(5, 9))
    span = np.linalg.svd(y - y.mean(0), full_matrices=False)[2][:5].T
    sxx, sxy, syy, _, _ = scaled_covariance(x, y @ span, 0.0)
    u, rho, _ = np.linalg.svd(inverse_sqrt_eigh(sxx) @ sxy @ inverse_sqrt_eigh(syy), full_matrices=True)
    rho = np.r_[rho, 0.0]
    basis, _ = np.linalg.qr((x - x.mean(0)) @ u)
    weights = np.abs(basis.T @ x).sum(1)
    reference = float(weights @ rho / weights.sum())
    result = similarity.cca(x, y)
    assert result.weighted_side == "x" and result.correlations.numel() == 6
    assert float(result.correlations[-1]) == 0.0
    assert abs(similarity.pwcca(x, y) - reference) <= TOLERANCE
    assert reference < 0.97 * float(rho[:5] @ weights[:5] / weights[:5].sum())  # the zero counts


def test_svcca_with_more_dims_than_rank_does_not_depend_on_row_order():
    # Beyond x's rank the principal directions have no variance; at epsilon = 0 they count as zero
    # correlations (google/svcca's full SVD), whatever the rounding of their ~0 variances.
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(1000, 5))
    x = latent @ rng.normal(size=(5, 12)) + 1.0
    y = latent[:, :3] @ rng.normal(size=(3, 12)) + rng.normal(size=(1000, 12))
    values = {
        similarity.svcca(x[order], y[order], dims=8) for order in (rng.permutation(1000) for _ in range(6))
    }
    assert max(values) - min(values) <= 1e-12
    reduced_x = (x - x.mean(0)) @ np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:5].T
    reduced_y = (y - y.mean(0)) @ np.linalg.svd(y - y.mean(0), full_matrices=False)[2][:8].T
    assert min(values) == pytest.approx(mean_cca(reduced_x, reduced_y) * 5 / 8, abs=1e-8)


@pytest.mark.parametrize("dims", [5, 15])
def test_svcca_matches_svd_reduction(activations, dims):
    x, y = activations
    assert abs(similarity.svcca(x, y, dims=dims) - svcca(x, y, dims)) <= TOLERANCE


def test_svcca_threshold_keeps_enough_variance():
    x, y = correlated(1500, 20, 30, seed=4)
    variance = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    dims_x = int(np.searchsorted(np.cumsum(variance) / variance.sum(), 0.9) + 1)
    variance_y = np.linalg.eigvalsh(np.cov(y, rowvar=False))[::-1]
    dims_y = int(np.searchsorted(np.cumsum(variance_y) / variance_y.sum(), 0.9) + 1)
    reduced = []
    for acts, dims in ((x, dims_x), (y, dims_y)):
        centred = acts - acts.mean(0)
        reduced.append(centred @ np.linalg.svd(centred, full_matrices=False)[2][:dims].T)
    assert abs(similarity.svcca(x, y, threshold=0.9) - mean_cca(*reduced)) <= TOLERANCE


def test_linear_cka_matches_plain_definition(activations):
    x, y = activations
    assert abs(similarity.linear_cka(x, y) - linear_cka(x, y)) <= TOLERANCE


def test_debiased_linear_cka_matches_unbiased_hsic():
    x, y = correlated(400, 20, 30, seed=5)
    assert abs(similarity.linear_cka(x, y, debiased=True) - debiased_linear_cka(x, y)) <= TOLERANCE


def test_torch_inputs_give_the_numpy_answer(activations):
    x, y = activations
    tensors = torch.from_numpy(x).float(), torch.from_numpy(y).float()
    assert (
        abs(
            similarity.pwcca(*tensors)
            - pwcca(x.astype(np.float32).astype(np.float64), y.astype(np.float32).astype(np.float64))
        )
        <= TOLERANCE
    )


@pytest.mark.parametrize("metric", ["mean_cca", "pwcca", "svcca", "linear_cka"])
def test_identical_inputs_give_one(activations, metric):
    x, _ = activations
    assert getattr(similarity, metric)(x, x) == pytest.approx(1.0, abs=1e-10)


def test_google_convention_gives_one_on_identical_inputs(activations):
    x, _ = activations
    assert similarity.pwcca(x, x, convention="google-svcca") == pytest.approx(1.0, abs=1e-10)


def _flip(result, column):
    directions = result.weighted_directions.clone()
    directions[:, column] *= -1
    return dataclasses.replace(result, weighted_directions=directions)


@pytest.mark.parametrize("column", [0, 3, -1])
def test_centered_pwcca_is_invariant_to_direction_signs(activations, column):
    x, y = activations
    result = similarity.cca(x, y)
    assert abs(_flip(result, column).pwcca() - result.pwcca()) <= 1e-12


def test_google_pwcca_depends_on_direction_signs(activations):
    x, y = activations
    result = similarity.cca(x, y, convention="google-svcca")
    assert abs(_flip(result, 0).pwcca() - result.pwcca()) > 1e-4


def test_independent_noise_matches_pillai_trace_expectation():
    # For independent Gaussian x (p features) and y (q), E[Σρ²] = p·q/(n-1) (Pillai's trace under the null).
    rng = np.random.default_rng(7)
    n, p, q = 4000, 40, 60
    traces = [
        float((similarity.cca(rng.normal(size=(n, p)), rng.normal(size=(n, q))).correlations ** 2).sum())
        for _ in range(3)
    ]
    assert np.mean(traces) == pytest.approx(p * q / (n - 1), rel=0.05)


def test_cca_is_invariant_to_rotations(activations):
    x, y = activations
    rotation = np.linalg.qr(np.random.default_rng(8).normal(size=(x.shape[1], x.shape[1])))[0]
    np.testing.assert_allclose(
        similarity.cca(x @ rotation, y).correlations.numpy(),
        similarity.cca(x, y).correlations.numpy(),
        atol=1e-10,
        rtol=0,
    )
    assert abs(similarity.mean_cca(x @ rotation, y) - similarity.mean_cca(x, y)) <= 1e-10


@pytest.mark.parametrize("debiased", [False, True])
def test_cka_is_invariant_to_isotropic_scaling(activations, debiased):
    x, y = activations
    base = similarity.linear_cka(x, y, debiased=debiased)
    assert abs(similarity.linear_cka(3.7 * x, 0.02 * y, debiased=debiased) - base) <= 1e-10


@pytest.mark.parametrize("convention", ["centered", "google-svcca"])
def test_canonical_coefficients_give_unit_variance_variates_at_the_correlations(activations, convention):
    x, y = activations
    result = similarity.cca(x, y, convention=convention)
    scale_x = np.sqrt(np.abs(np.cov(x, rowvar=False)).max())
    scale_y = np.sqrt(np.abs(np.cov(y, rowvar=False)).max())
    u = (x - x.mean(0)) / scale_x @ result.x_coefficients.numpy()
    v = (y - y.mean(0)) / scale_y @ result.y_coefficients.numpy()
    np.testing.assert_allclose(u.var(0, ddof=1), 1.0, atol=1e-8)
    np.testing.assert_allclose((u * v).sum(0) / (len(u) - 1), result.correlations.numpy(), atol=1e-8)
